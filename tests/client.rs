//! A real HTTP client (ureq) accepts the server's responses, over one
//! reused keep-alive connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectionDetails, Connector, TcpConnector, Transport};
use ureq::{Agent, ResponseExt};

use crate::util::{TestServer, big_pattern, start_default_site};

/// Passes the TCP transport through, counting each new connection.
#[derive(Debug)]
struct CountConnections(Arc<AtomicUsize>);

impl<In: Transport> Connector<In> for CountConnections {
    type Out = In;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<In>, ureq::Error> {
        if chained.is_some() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(chained)
    }
}

/// An agent that keeps connections alive, reports 4xx/5xx as responses,
/// and counts the connections it opens.
fn counting_agent() -> (Agent, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(4)
        .timeout_global(Some(Duration::from_secs(10)))
        .build();
    let connector = TcpConnector::default().chain(CountConnections(count.clone()));
    let agent = Agent::with_parts(config, connector, DefaultResolver::default());
    (agent, count)
}

fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

crate::engine_tests! {
    #[test]
    fn ureq_fetches_over_one_keep_alive_connection() {
        let server = start_default_site();
        let (agent, connections) = counting_agent();

        let mut r = agent.get(url(&server, "/")).call().expect("GET /");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.body().mime_type(), Some("text/html"));
        assert_eq!(r.body().charset(), Some("utf-8"));
        assert_eq!(
            r.body_mut().read_to_string().unwrap(),
            "<!doctype html><title>home</title>home page\n"
        );

        let mut r = agent
            .get(url(&server, "/style.css"))
            .call()
            .expect("GET /style.css");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.body().mime_type(), Some("text/css"));
        assert_eq!(r.body().charset(), Some("utf-8"));
        assert_eq!(r.body().content_length(), Some(23));
        assert_eq!(
            r.body_mut().read_to_string().unwrap(),
            "body { color: black; }\n"
        );

        let mut r = agent
            .get(url(&server, "/big.bin"))
            .call()
            .expect("GET /big.bin");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.body().mime_type(), Some("application/octet-stream"));
        assert_eq!(r.body().content_length(), Some(1024 * 1024));
        let big = r.body_mut().read_to_vec().unwrap();
        assert_eq!(big.len(), 1024 * 1024);
        assert!(big == big_pattern(1024 * 1024), "big.bin corrupted");

        let mut r = agent
            .get(url(&server, "/no-such-file"))
            .call()
            .expect("GET a missing file");
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(r.body().mime_type(), Some("text/html"));
        assert_eq!(
            r.body_mut().read_to_string().unwrap(),
            "<!doctype html><title>404</title>custom not found\n"
        );

        let mut r = agent
            .head(url(&server, "/style.css"))
            .call()
            .expect("HEAD /style.css");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(
            r.headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some("23")
        );
        assert!(r.body_mut().read_to_vec().unwrap().is_empty());

        // After a HEAD the connection is still in sync.
        let mut r = agent
            .get(url(&server, "/sub/page.html?x=1"))
            .call()
            .expect("GET after HEAD");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.get_uri().path(), "/sub/page.html");
        assert_eq!(r.body_mut().read_to_string().unwrap(), "sub page\n");

        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "every request should have reused one keep-alive connection"
        );
        assert_eq!(server.handle.active_connections(), 1);
    }

    #[test]
    fn ureq_follows_the_directory_redirect() {
        let server = start_default_site();
        let (agent, _) = counting_agent();
        let mut r = agent.get(url(&server, "/sub")).call().expect("GET /sub");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.get_uri().path(), "/sub/");
        assert_eq!(r.body_mut().read_to_string().unwrap(), "sub index\n");
    }

    #[test]
    fn ureq_reports_404_as_a_status_error_by_default() {
        let server = start_default_site();
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        match agent.get(url(&server, "/no-such-file")).call() {
            Err(ureq::Error::StatusCode(404)) => {}
            Err(e) => panic!("expected StatusCode(404), got {e:?}"),
            Ok(r) => panic!("expected StatusCode(404), got {}", r.status()),
        }
        // The agent goes on working after the error.
        let mut r = agent.get(url(&server, "/")).call().expect("GET /");
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.body_mut().read_to_string().unwrap().contains("home page"));
    }
}
