//! The policy crates' types as the wire spells them. A policy type that
//! reaches a client has its own wire type (the protocol must not change
//! when a policy is renamed inside) and one exhaustive `From` here, so a
//! variant added to a policy fails to compile until the protocol says how
//! it is sent.

use streamlet_autoscale::Reason;

use crate::message::ScaleReason;

impl From<Reason> for ScaleReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Min => Self::Min,
            Reason::MinFree => Self::MinFree,
            Reason::Lookahead => Self::Lookahead,
            Reason::Forecast => Self::Forecast,
            Reason::IdleGrace => Self::IdleGrace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reason reaches clients under the name the rules give it, in
    /// JSON as in `as_str`.
    #[test]
    fn scale_reasons_keep_their_names_on_the_wire() {
        for reason in Reason::ALL {
            let wire = ScaleReason::from(reason);
            assert_eq!(wire.as_str(), reason.as_str());
            assert_eq!(serde_json::to_string(&wire).unwrap(), format!("\"{reason}\""));
        }
    }
}
