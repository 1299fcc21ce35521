//! Forecast errors, summed as they come.

/// Errors of one method at one horizon.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    n: u64,
    abs: f64,
    squared: f64,
    signed: f64,
    /// Absolute percentage errors, on minutes with more than
    /// [`MAPE_FLOOR`] arrivals.
    ape: f64,
    ape_n: u64,
}

/// Minutes with at most this many arrivals are left out of the MAPE.
pub const MAPE_FLOOR: f64 = 10.0;

impl Errors {
    pub fn add(&mut self, forecast: f64, actual: f64) {
        let e = forecast - actual;
        self.n += 1;
        self.abs += e.abs();
        self.squared += e * e;
        self.signed += e;
        if actual > MAPE_FLOOR {
            self.ape += e.abs() / actual;
            self.ape_n += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn mae(&self) -> f64 {
        self.abs / self.n as f64
    }

    pub fn rmse(&self) -> f64 {
        (self.squared / self.n as f64).sqrt()
    }

    /// Mean absolute percentage error, percent.
    pub fn mape(&self) -> f64 {
        100.0 * self.ape / self.ape_n as f64
    }

    /// Mean of forecast minus actual: above zero, the method over-forecasts.
    pub fn bias(&self) -> f64 {
        self.signed / self.n as f64
    }
}
