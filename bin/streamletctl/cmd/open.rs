//! `streamletctl open --pool P [--tenant T]`: like netcat, with a streamlet at
//! the other end.
//!
//! One end of a socket pair goes to the daemon with `Open`; the other end is
//! copied to stdout, and stdin is copied to it. At end of input the write side
//! is shut down (the streamlet reads end of file); the command ends when the
//! streamlet's side reaches end of file, after saying why the stream ended if
//! the daemon tells within a second.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use streamlet_client::proto::{Event, OpenRequest, Opened};
use streamlet_client::Client;
use tokio::sync::oneshot;

use crate::out;

/// How long to wait, after the stream's end of file, for the daemon to say why it ended.
const END_REPORT_WAIT: Duration = Duration::from_secs(1);

pub async fn run(client: &mut Client, request: OpenRequest, json: bool) -> anyhow::Result<()> {
    let (ours, theirs) = UnixStream::pair().context("creating a socket pair")?;
    let opened = client.open(request, theirs.as_fd()).await?;
    drop(theirs);
    announce(&opened, json);

    // Blocking copies on their own threads: stdin may be a terminal or a file,
    // which cannot be polled. The stdin thread is left behind at exit if it is
    // still waiting for input.
    let upload_end = ours.try_clone().context("duplicating the stream's socket")?;
    let (uploaded_tx, mut uploaded) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || uploaded_tx.send(upload(io::stdin().lock(), &upload_end)))
        .context("starting the stdin thread")?;
    let download = tokio::task::spawn_blocking(move || download(&ours, io::stdout().lock()));
    tokio::pin!(download);
    let mut uploading = true;
    loop {
        tokio::select! {
            done = &mut uploaded, if uploading => {
                uploading = false;
                if let Ok(Err(err)) = done {
                    return Err(err).context("copying stdin to the stream");
                }
            }
            done = &mut download => {
                done.context("the stdout thread")?.context("copying the stream to stdout")?;
                break;
            }
        }
    }
    report_end(client, &opened, json).await;
    Ok(())
}

fn announce(opened: &Opened, json: bool) {
    if json {
        out::json_note(
            &json!({ "stream": opened.stream.0, "pool": opened.pool, "worker": opened.worker.0, "rate": opened.rate }),
        );
    } else {
        let rate =
            opened.rate.map(|r| format!(", {}", streamlet_client::proto::units::format_rate(r))).unwrap_or_default();
        out::note(&format!("stream {} on streamlet {} (pool {}{rate})", opened.stream, opened.worker, opened.pool));
    }
}

/// `input` to the stream, then end of file. A stream that stopped reading ends
/// the upload quietly: what it sends back still comes through.
fn upload(mut input: impl Read, stream: &UnixStream) -> io::Result<()> {
    match io::copy(&mut input, &mut &*stream) {
        Ok(_) => stream.shutdown(Shutdown::Write),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(err),
    }
}

/// The stream to `output`, until end of file.
fn download(stream: &UnixStream, mut output: impl Write) -> io::Result<()> {
    io::copy(&mut &*stream, &mut output)?;
    output.flush()
}

/// Says why the stream ended, if the daemon tells soon enough.
async fn report_end(client: &mut Client, opened: &Opened, json: bool) {
    let deadline = tokio::time::Instant::now() + END_REPORT_WAIT;
    while let Ok(Ok(Event::StreamEnded(ended))) = tokio::time::timeout_at(deadline, client.next_event()).await {
        if ended.stream != opened.stream {
            continue;
        }
        if json {
            out::json_note(&json!({
                "stream": ended.stream.0,
                "ended": ended.reason.to_string(),
                "bytes_in": ended.bytes_in,
                "bytes_out": ended.bytes_out,
                "bytes_exact": ended.bytes_exact,
            }));
        } else {
            out::note(&format!(
                "stream {} ended: {} ({})",
                ended.stream,
                ended.reason,
                streamlet_client::table::human::end_counts(&ended)
            ));
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_both_ways_and_passes_end_of_file_on() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        upload(&b"ping"[..], &ours).unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ping", "the far end reads end of file after the input");
        theirs.write_all(b"pong").unwrap();
        theirs.shutdown(Shutdown::Write).unwrap();
        let mut out = Vec::new();
        download(&ours, &mut out).unwrap();
        assert_eq!(out, b"pong");
    }
}
