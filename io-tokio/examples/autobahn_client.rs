//! The Autobahn|Testsuite client testee: asks the fuzzing server how many
//! cases there are, runs each one echoing every message, then asks for the
//! reports.
//!
//! ```sh
//! ../shared/autobahn/test-client.sh -x '12.*,13.*' -- \
//!     target/release/examples/autobahn_client @URL@ @AGENT@
//! ```

use sockeye_tokio::{Client, Config, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "sockeye".into());
    let config = Config {
        // Case 9.x sends 16 MiB messages.
        max_message_size: 64 << 20,
        ..Config::default()
    };

    let mut counter = Client::new(format!("{url}/getCaseCount")).connect().await?;
    let count: usize = match counter.recv().await {
        Some(Ok(message)) => message
            .as_text()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    while counter.recv().await.is_some() {}

    for case in 1..=count {
        let case_url = format!("{url}/runCase?case={case}&agent={agent}");
        let mut socket = match Client::new(case_url).config(config.clone()).connect().await {
            Ok(socket) => socket,
            Err(error) => {
                eprintln!("case {case}: {error}");
                continue;
            }
        };
        while let Some(message) = socket.recv().await {
            match message {
                Ok(message) => {
                    if socket.feed(message).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }

    let mut reports = Client::new(format!("{url}/updateReports?agent={agent}"))
        .connect()
        .await?;
    while reports.recv().await.is_some() {}
    Ok(())
}
