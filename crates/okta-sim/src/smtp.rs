//! A real SMTP server on loopback that captures what it is sent, for testing
//! provwatch's email channel end to end over TCP (lettre talks to it exactly as
//! it would to a relay).
//!
//! Why not `mailin-embedded`: its `Server::serve()` blocks a thread pool forever
//! with no way to stop it, it cannot answer a `421` greeting or refuse service on
//! demand, it runs outside the caller's tokio runtime, and its mandatory TLS
//! backend pulls rustls with default features (aws-lc-rs) into every build that
//! depends on this crate. So the sink reuses the protocol engine underneath it,
//! the `mailin` crate (RFC 5321 state machine: EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, VRFY, QUIT, AUTH PLAIN/LOGIN), and drives it from
//! a small tokio accept loop that we control: ephemeral port, `421` on demand,
//! per-recipient `550`, optional mandatory AUTH, and shutdown on drop (after
//! which connections are refused).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const SERVER_NAME: &str = "sink.okta-sim.test";
const SERVICE_NOT_AVAILABLE: &[u8] =
    b"421 4.3.2 sink.okta-sim.test Service not available, closing transmission channel\r\n";
/// RFC 4954 §6: the reply to MAIL (or any command but AUTH, EHLO, HELO, NOOP, RSET, QUIT) when
/// policy requires authentication and none is in force. `mailin` alone would answer 503.
const AUTHENTICATION_REQUIRED: &[u8] = b"530 5.7.0 Authentication required\r\n";
/// RFC 5321 §4.5.3.1.6 caps a text line at 1000 octets; allow generous slack
/// but never let one client grow a buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// One message the sink accepted (after the final `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The MAIL FROM reverse-path, without angle brackets.
    pub from: String,
    /// The accepted RCPT TO forward-paths, without angle brackets.
    pub to: Vec<String>,
    /// The raw RFC 5322 message, dot-unstuffed, CRLF line endings.
    pub data: String,
    /// The user that authenticated for this session, if any.
    pub auth_user: Option<String>,
}

#[derive(Debug, Default)]
struct SinkState {
    down: bool,
    rejected: HashSet<String>,
    messages: Vec<ReceivedMail>,
    connections: usize,
    credentials: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<SinkState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn bare_address(path: &str) -> String {
    path.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Per-connection `mailin` handler: decisions come from the shared state.
struct SinkHandler {
    shared: Arc<Shared>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    auth_user: Option<String>,
    /// Set once AUTH succeeds; read by the session loop, which cannot reach the handler
    /// inside `mailin`'s session.
    authenticated: Arc<std::sync::atomic::AtomicBool>,
}

impl SinkHandler {
    fn check_credentials(&mut self, user: &str, password: &str) -> Response {
        let ok = match &self.shared.lock().credentials {
            Some((u, p)) => u == user && p == password,
            // Auth is only advertised when credentials are configured.
            None => false,
        };
        if ok {
            self.auth_user = Some(user.to_string());
            self.authenticated
                .store(true, std::sync::atomic::Ordering::SeqCst);
            mailin::response::AUTH_OK
        } else {
            mailin::response::INVALID_CREDENTIALS
        }
    }
}

impl Handler for SinkHandler {
    fn rcpt(&mut self, to: &str) -> Response {
        let addr = bare_address(to);
        if self
            .shared
            .lock()
            .rejected
            .contains(&addr.to_ascii_lowercase())
        {
            return Response::custom(
                550,
                format!("5.1.1 <{addr}>: Recipient address rejected: User unknown"),
            );
        }
        mailin::response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = bare_address(from);
        self.to = to.iter().map(|t| bare_address(t)).collect();
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = ReceivedMail {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
            auth_user: self.auth_user.clone(),
        };
        self.shared.lock().messages.push(mail);
        mailin::response::OK
    }

    fn auth_plain(&mut self, _authz: &str, authn: &str, password: &str) -> Response {
        self.check_credentials(authn, password)
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.check_credentials(username, password)
    }
}

/// A capturing SMTP server on `127.0.0.1:<ephemeral>`, served on the current
/// tokio runtime. Dropping it closes the listener and every open session.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SmtpSink {
    /// Starts an open relay: no AUTH offered, every recipient accepted.
    pub async fn start() -> io::Result<SmtpSink> {
        Self::start_inner(None).await
    }

    /// Starts a sink that advertises AUTH PLAIN/LOGIN (over plaintext, as this
    /// is loopback-only) and refuses MAIL until the client authenticates with
    /// exactly these credentials.
    pub async fn start_with_auth(username: &str, password: &str) -> io::Result<SmtpSink> {
        Self::start_inner(Some((username.to_string(), password.to_string()))).await
    }

    async fn start_inner(credentials: Option<(String, String)>) -> io::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared.lock().credentials = credentials;
        let server = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(SmtpSink {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `smtp://127.0.0.1:PORT` (lettre URL form, plaintext).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// While down, new connections get a `421` greeting and are closed, and
    /// open sessions get `421` on their next command (RFC 5321 §3.8).
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Answers `550` to `RCPT TO` for this address (case-insensitive).
    pub fn reject_recipient(&self, addr: &str) {
        self.shared
            .lock()
            .rejected
            .insert(bare_address(addr).to_ascii_lowercase());
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.lock().messages.clone()
    }

    /// TCP connections accepted so far (including ones turned away while down).
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connections
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the sessions here means aborting this task (on drop) ends them.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    shared.lock().connections += 1;
                    let shared = shared.clone();
                    sessions.spawn(async move {
                        if let Err(err) = serve_session(stream, peer.ip(), shared).await {
                            tracing::debug!(error = %err, "smtp sink session ended");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "smtp sink accept failed");
                    // Typically EMFILE: back off instead of spinning.
                    tokio::task::yield_now().await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// Commands that RFC 4954 §6 answers with 530 while authentication is required but absent.
fn needs_auth(line: &[u8]) -> bool {
    let verb: Vec<u8> = line
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .map(u8::to_ascii_uppercase)
        .collect();
    matches!(verb.as_slice(), b"MAIL" | b"RCPT" | b"DATA")
}

async fn write_response(w: &mut TcpStream, res: &Response) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64);
    res.write_to(&mut buf)?;
    w.write_all(&buf).await?;
    w.flush().await
}

async fn serve_session(stream: TcpStream, peer: IpAddr, shared: Arc<Shared>) -> io::Result<()> {
    let mut stream = BufReader::new(stream);
    let (down, auth) = {
        let st = shared.lock();
        (st.down, st.credentials.is_some())
    };
    if down {
        stream.get_mut().write_all(SERVICE_NOT_AVAILABLE).await?;
        return stream.get_mut().shutdown().await;
    }
    let mut builder = SessionBuilder::new(SERVER_NAME);
    if auth {
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login)
            .insecure_enable_plaintext_auth();
    }
    let authenticated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = SinkHandler {
        shared: shared.clone(),
        from: String::new(),
        to: Vec::new(),
        data: Vec::new(),
        auth_user: None,
        authenticated: authenticated.clone(),
    };
    let mut in_data = false;
    let mut in_sasl = false;
    let mut session = builder.build(peer, handler);
    write_response(stream.get_mut(), &session.greeting()).await?;

    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = (&mut stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if shared.lock().down {
            stream.get_mut().write_all(SERVICE_NOT_AVAILABLE).await?;
            return stream.get_mut().shutdown().await;
        }
        // Lines after a 334 challenge are SASL data, not commands.
        if auth
            && !in_data
            && !in_sasl
            && !authenticated.load(std::sync::atomic::Ordering::SeqCst)
            && needs_auth(&line)
        {
            stream.get_mut().write_all(AUTHENTICATION_REQUIRED).await?;
            continue;
        }
        let res = session.process(&line);
        // 354 opens the message text, whose lines are not commands; its end gets a reply.
        if res.code == 354 {
            in_data = true;
        } else if in_data && res.action == Action::Reply {
            in_data = false;
        }
        in_sasl = res.code == 334;
        match res.action {
            Action::Reply => write_response(stream.get_mut(), &res).await?,
            Action::NoReply => {}
            // STARTTLS is never advertised, so an upgrade can't be agreed.
            Action::Close | Action::UpgradeTls => {
                write_response(stream.get_mut(), &res).await?;
                return stream.get_mut().shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_reply(r: &mut BufReader<TcpStream>) -> String {
        // Multi-line replies use "NNN-"; the last line uses "NNN ".
        let mut out = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            out.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return out;
            }
        }
    }

    async fn send(r: &mut BufReader<TcpStream>, cmd: &str) -> String {
        r.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        read_reply(r).await
    }

    /// RFC 4954 §6: while the server requires authentication and none is in force, MAIL (and the
    /// rest of the transaction) is answered `530 5.7.0 Authentication required`, not a generic
    /// 503 bad sequence; after AUTH the same transaction goes through.
    #[tokio::test]
    async fn smtp_mail_before_auth_is_530() {
        let sink = SmtpSink::start_with_auth("alerts", "s3cret").await.unwrap();
        let mut c = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
        assert!(read_reply(&mut c).await.starts_with("220 "));
        let ehlo = send(&mut c, "EHLO client.test\r\n").await;
        assert!(ehlo.contains("AUTH"), "{ehlo}");
        let r = send(&mut c, "MAIL FROM:<a@x.test>\r\n").await;
        assert!(r.starts_with("530 5.7.0 "), "{r}");
        let r = send(&mut c, "rcpt to:<b@y.test>\r\n").await;
        assert!(r.starts_with("530 "), "{r}");
        assert!(send(&mut c, "NOOP\r\n").await.starts_with("250"));
        // AUTH LOGIN: the lines after each 334 are SASL data, however they read.
        assert!(send(&mut c, "AUTH LOGIN\r\n").await.starts_with("334"));
        assert!(send(&mut c, "YWxlcnRz\r\n").await.starts_with("334")); // "alerts"
        assert!(send(&mut c, "czNjcmV0\r\n").await.starts_with("235")); // "s3cret"

        assert!(send(&mut c, "MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "RCPT TO:<b@y.test>\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "DATA\r\n").await.starts_with("354"));
        // A message line that reads like a command is message text, not a command.
        assert!(
            send(&mut c, "Subject: t\r\n\r\nMAIL FROM is text here\r\n.\r\n")
                .await
                .starts_with("250")
        );
        let msgs = sink.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].auth_user.as_deref(), Some("alerts"));
        assert!(msgs[0].data.contains("MAIL FROM is text here"));

        // Without AUTH configured nothing changes: an open relay takes MAIL at once.
        let open = SmtpSink::start().await.unwrap();
        let mut c = BufReader::new(TcpStream::connect(open.addr()).await.unwrap());
        read_reply(&mut c).await;
        send(&mut c, "EHLO client.test\r\n").await;
        assert!(send(&mut c, "MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with("250"));
    }

    #[tokio::test]
    async fn raw_session_with_dot_unstuffing_and_rset() {
        let sink = SmtpSink::start().await.unwrap();
        let mut c = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
        assert!(read_reply(&mut c).await.starts_with("220 "));
        assert!(send(&mut c, "EHLO client.test\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "NOOP\r\n").await.starts_with("250"));
        assert!(send(&mut c, "MAIL FROM:<dropped@x.test>\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "RSET\r\n").await.starts_with("250"));
        assert!(send(&mut c, "MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "RCPT TO:<b@y.test>\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "DATA\r\n").await.starts_with("354"));
        assert!(send(&mut c, "Subject: hi\r\n\r\n..leading dot\r\n.\r\n")
            .await
            .starts_with("250"));
        assert!(send(&mut c, "QUIT\r\n").await.starts_with("221"));
        let msgs = sink.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].from, "a@x.test");
        assert_eq!(msgs[0].to, vec!["b@y.test".to_string()]);
        assert_eq!(msgs[0].data, "Subject: hi\r\n\r\n.leading dot\r\n");
    }

    #[tokio::test]
    async fn rejected_recipient_gets_550() {
        let sink = SmtpSink::start().await.unwrap();
        sink.reject_recipient("Nobody@Y.test");
        let mut c = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
        read_reply(&mut c).await;
        send(&mut c, "HELO client.test\r\n").await;
        send(&mut c, "MAIL FROM:<a@x.test>\r\n").await;
        assert!(send(&mut c, "RCPT TO:<nobody@y.test>\r\n")
            .await
            .starts_with("550"));
    }

    #[tokio::test]
    async fn down_sends_421_greeting_and_drop_refuses() {
        let sink = SmtpSink::start().await.unwrap();
        sink.set_down(true);
        let mut c = TcpStream::connect(sink.addr()).await.unwrap();
        let mut greeting = String::new();
        c.read_to_string(&mut greeting).await.unwrap();
        assert!(greeting.starts_with("421 "), "{greeting}");
        let addr = sink.addr();
        drop(sink);
        // The abort lands when the runtime next polls the server task.
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(refused, "listener still accepting after drop");
    }

    #[tokio::test]
    async fn auth_required_when_configured() {
        let sink = SmtpSink::start_with_auth("alerts", "s3cret").await.unwrap();
        let mut c = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
        read_reply(&mut c).await;
        let ehlo = send(&mut c, "EHLO client.test\r\n").await;
        assert!(ehlo.contains("AUTH"), "{ehlo}");
        // mailin answers MAIL-before-AUTH with a 5xx (503 bad sequence).
        assert!(send(&mut c, "MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with('5'));
        // base64("\0alerts\0wrong")
        assert!(send(&mut c, "AUTH PLAIN AGFsZXJ0cwB3cm9uZw==\r\n")
            .await
            .starts_with("535"));
        // base64("\0alerts\0s3cret")
        assert!(send(&mut c, "AUTH PLAIN AGFsZXJ0cwBzM2NyZXQ=\r\n")
            .await
            .starts_with("235"));
        assert!(send(&mut c, "MAIL FROM:<a@x.test>\r\n")
            .await
            .starts_with("250"));
    }
}
