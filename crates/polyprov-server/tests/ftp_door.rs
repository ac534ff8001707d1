//! The FTP/FTPS door on the same core as HTTP, driven by curl, lftp and raw sockets.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer, test_pki};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/run installs curl and lftp)"))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// `curl` against the door, logged in as `user:password`, with extra arguments.
fn curl(port: u16, login: &str, path: &str, extra: &[&str]) -> Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "-u", login])
        .args(extra)
        .arg(format!("ftp://localhost:{port}/{path}")))
}

fn ftp_server(
    tweak: impl FnOnce(&mut polyprov_server::Settings) + 'static,
) -> impl Future<Output = TestServer> {
    TestServer::start_with(move |s| {
        s.ftp.listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(s);
    })
}

fn login(t: &TestServer) -> String {
    let (u, p) = t.server.provisioning_login.clone().unwrap();
    format!("{u}:{p}")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_and_writes_the_same_files_as_http() {
    let t = ftp_server(|s| s.uploads.max_config_bytes = 2_000).await;
    let port = t.server.ftp_addr.unwrap().port();
    let prov = login(&t);
    // A static per-device master in the boot root must not show up in listings.
    std::fs::write(t.root().join(format!("{MAC}.cfg")), "<x/>").unwrap();
    std::fs::create_dir(t.root().join("firmware")).unwrap();
    assert_eq!(
        t.put(&format!("/{MAC}-web.cfg"), "<WEB a=\"1\"/>")
            .await
            .status(),
        201
    );
    let dir = t.dir.path().to_path_buf();

    let outs = blocking(move || {
        let shared = curl(port, "PlcmSpIp:PlcmSpIp", "000000000000.cfg", &[]);
        let listing = curl(port, "PlcmSpIp:PlcmSpIp", "", &[]);
        let theirs = curl(port, "PlcmSpIp:PlcmSpIp", &format!("{MAC}-web.cfg"), &[]);
        let mine = curl(port, &prov, &format!("{MAC}-web.cfg"), &[]);
        let up = dir.join("phone.cfg");
        std::fs::write(&up, "<PHONE_CONFIG><OVERRIDES b=\"2\"/></PHONE_CONFIG>").unwrap();
        let stored = curl(
            port,
            &prov,
            &format!("{MAC}-phone.cfg"),
            &["-T", up.to_str().unwrap()],
        );
        let factory_upload = curl(
            port,
            "PlcmSpIp:PlcmSpIp",
            &format!("{MAC}-phone.cfg"),
            &["-T", up.to_str().unwrap()],
        );
        let bad = dir.join("bad.cfg");
        std::fs::write(&bad, "<PHONE_CONFIG><OVERRIDES").unwrap();
        let malformed = curl(
            port,
            &prov,
            &format!("{MAC}-phone.cfg"),
            &["-T", bad.to_str().unwrap()],
        );
        let big = dir.join("big.cfg");
        std::fs::write(&big, format!("<a>{}</a>", "x".repeat(5_000))).unwrap();
        let too_big = curl(
            port,
            &prov,
            &format!("{MAC}-phone.cfg"),
            &["-T", big.to_str().unwrap()],
        );
        let shared_upload = curl(port, &prov, "site.cfg", &["-T", up.to_str().unwrap()]);
        let traversal = curl(port, &prov, "%2e%2e/%2e%2e/etc/passwd", &[]);
        let delete = curl(port, &prov, "", &["-Q", "DELE 000000000000.cfg"]);
        let wrong = curl(port, "PlcmSpIp:guess", "000000000000.cfg", &[]);
        [
            shared,
            listing,
            theirs,
            mine,
            stored,
            factory_upload,
            malformed,
            too_big,
            shared_upload,
            traversal,
            delete,
            wrong,
        ]
    })
    .await;
    let [
        shared,
        listing,
        theirs,
        mine,
        stored,
        factory_upload,
        malformed,
        too_big,
        shared_upload,
        traversal,
        delete,
        wrong,
    ] = outs;
    assert!(shared.status.success(), "{}", text(&shared));
    assert!(text(&shared).contains("<APPLICATION"), "{}", text(&shared));
    let listing = text(&listing);
    assert!(
        listing.contains("000000000000.cfg") && listing.contains("firmware"),
        "{listing}"
    );
    assert!(
        !listing.contains(MAC),
        "per-device names are never listed: {listing}"
    );
    assert!(
        !theirs.status.success(),
        "the factory login proves nothing: {}",
        text(&theirs)
    );
    assert_eq!(theirs.status.code(), Some(78), "550: {}", text(&theirs));
    assert_eq!(String::from_utf8_lossy(&mine.stdout), "<WEB a=\"1\"/>");
    assert!(stored.status.success(), "{}", text(&stored));
    assert!(!factory_upload.status.success());
    assert!(text(&malformed).contains("550"), "{}", text(&malformed));
    assert_eq!(too_big.status.code(), Some(70), "552: {}", text(&too_big));
    assert!(
        text(&shared_upload).contains("553"),
        "{}",
        text(&shared_upload)
    );
    assert!(!traversal.status.success(), "{}", text(&traversal));
    assert!(text(&delete).contains("550"), "{}", text(&delete));
    assert_eq!(
        wrong.status.code(),
        Some(67),
        "login refused: {}",
        text(&wrong)
    );

    // Uploaded over FTP, read over HTTP: one core, one file tree.
    let phone = t
        .get(&format!("/{MAC}-phone.cfg"))
        .await
        .text()
        .await
        .unwrap();
    assert!(phone.contains("b=\"2\""), "{phone}");
    let files = t.upload_files();
    assert_eq!(files.len(), 2, "refused uploads wrote nothing: {files:?}");

    for line in [
        "door=\"ftp\",kind=\"shared\",status=\"200\"",
        "door=\"ftp\",kind=\"device_file\",status=\"413\"",
        "polyprov_security_events_total{event=\"bad_credentials\"} 1",
    ] {
        t.assert_metric(line).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_appended_by_stor_and_appe_alike() {
    let t = ftp_server(|_| {}).await;
    let port = t.server.ftp_addr.unwrap().port();
    let prov = login(&t);
    let dir = t.dir.path().to_path_buf();
    let log = blocking(move || {
        let part = dir.join("part.log");
        std::fs::write(&part, "line 1\n").unwrap();
        let name = format!("{MAC}-app.log");
        assert!(
            curl(port, &prov, &name, &["-T", part.to_str().unwrap()])
                .status
                .success()
        );
        std::fs::write(&part, "line 2\n").unwrap();
        let o = curl(
            port,
            &prov,
            &name,
            &["-T", part.to_str().unwrap(), "--append"],
        );
        assert!(o.status.success(), "{}", text(&o));
        curl(port, &prov, &name, &[])
    })
    .await;
    assert_eq!(String::from_utf8_lossy(&log.stdout), "line 1\nline 2\n");
}

fn pki_settings(
    dir: &Path,
    require: bool,
) -> impl FnOnce(&mut polyprov_server::Settings) + 'static {
    let (_, cert, key) = test_pki(dir);
    move |s| {
        s.ftp.tls_cert = Some(cert);
        s.ftp.tls_key = Some(key);
        s.ftp.require_tls = require;
    }
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ftps_with_curl_and_lftp() {
    let pki = tempfile::tempdir().unwrap();
    let t = ftp_server(pki_settings(pki.path(), true)).await;
    let port = t.server.ftp_addr.unwrap().port();
    let prov = login(&t);
    let firmware: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(t.root().join("sip.ld"), &firmware).unwrap();
    let ca = pki.path().join("ca.pem");
    let dir = t.dir.path().to_path_buf();
    let root = t.root();

    blocking(move || {
        let ca = ca.to_str().unwrap();
        // Clear text is refused when TLS is required.
        let clear = curl(port, &prov, "000000000000.cfg", &[]);
        assert!(!clear.status.success(), "{}", text(&clear));
        // curl: AUTH TLS, protected data channel, get and put.
        let got = dir.join("curl.ld");
        let o = curl(
            port,
            &prov,
            "3111-44500-001.sip.ld",
            &["--ssl-reqd", "--cacert", ca, "-o", got.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            sha(&got),
            sha(&root.join("sip.ld")),
            "part-number fallback, byte-identical"
        );
        let up = dir.join("web.cfg");
        std::fs::write(&up, "<WEB c=\"3\"/>").unwrap();
        let o = curl(
            port,
            &prov,
            &format!("{MAC}-web.cfg"),
            &["--ssl-reqd", "--cacert", ca, "-T", up.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", text(&o));

        // lftp: the same over its own TLS stack (GnuTLS).
        let (user, pw) = prov.split_once(':').unwrap();
        let lftp_got = dir.join("lftp.ld");
        let lftp_up = dir.join("dir.xml");
        std::fs::write(&lftp_up, "<directory><item_list/></directory>").unwrap();
        let script = format!(
            "set ssl:ca-file {ca}; set ftp:ssl-force true; set ftp:ssl-protect-data true; \
             set net:max-retries 1; set net:timeout 20; \
             open -u {user},{pw} ftp://localhost:{port}; \
             get sip.ld -o {}; put {} -o {MAC}-directory.xml; cls -1; bye",
            lftp_got.display(),
            lftp_up.display()
        );
        let o = run(Command::new("lftp").args(["-c", &script]));
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(sha(&lftp_got), sha(&root.join("sip.ld")));
        assert!(text(&o).contains("000000000000.cfg"), "{}", text(&o));
    })
    .await;
    let web = t
        .get(&format!("/{MAC}-web.cfg"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(web, "<WEB c=\"3\"/>");
    let directory = t
        .get(&format!("/{MAC}-directory.xml"))
        .await
        .text()
        .await
        .unwrap();
    assert!(directory.contains("item_list"), "{directory}");
}

/// A raw control connection: reads one (possibly multi-line) reply per command.
struct Control {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn connect(addr: std::net::SocketAddr) -> (Control, String) {
        Self::connect_from([127, 0, 0, 1], addr).await
    }

    /// A control connection from another loopback address (another "host").
    async fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> (Control, String) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Control {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut raw = Vec::new();
            let n = tokio::time::timeout(
                Duration::from_secs(20),
                self.reader.read_until(b'\n', &mut raw),
            )
            .await
            .expect("a reply within 20 s")
            .unwrap_or(0);
            let line = String::from_utf8_lossy(&raw);
            all.push_str(&line);
            // The last line of a reply is "NNN text" with the first line's code (RFC 959 §4.2);
            // "NNN-text" opens a multi-line reply whose other lines may say anything ("cmd
            // channel in tls mode: …" in STAT's is not an end).
            let code = &all.as_bytes()[..all.len().min(3)];
            let ends = line.len() >= 4
                && line.as_bytes()[..3] == *code
                && code.iter().all(u8::is_ascii_digit)
                && line.as_bytes()[3] == b' ';
            if n == 0 || ends {
                return all;
            }
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> String {
        self.writer.write_all(bytes).await.unwrap();
        self.reply().await
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    async fn login(&mut self, user: &str, password: &str) {
        self.cmd(&format!("USER {user}")).await;
        let r = self.cmd(&format!("PASS {password}")).await;
        assert!(r.starts_with("230"), "{r}");
        assert!(self.cmd("TYPE I").await.starts_with("200"));
    }

    /// `PASV`, and the data connection it offers.
    async fn pasv(&mut self) -> tokio::net::TcpStream {
        let port = self.pasv_port().await;
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap()
    }

    /// `RETR` of the staging master over an open data connection, read whole (bounded).
    async fn retr_master(&mut self, data: &mut tokio::net::TcpStream) {
        let r = self.cmd("RETR 000000000000.cfg").await;
        assert!(r.starts_with("150") || r.starts_with("125"), "{r}");
        let mut body = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncReadExt::read_to_end(data, &mut body),
        )
        .await
        .expect("the data connection carries the file")
        .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<APPLICATION"));
    }

    /// `PASV`, and the port it announces.
    async fn pasv_port(&mut self) -> u16 {
        let r = self.cmd("PASV").await;
        assert!(r.starts_with("227"), "{r}");
        let nums: Vec<u16> = r[r.find('(').unwrap() + 1..r.find(')').unwrap()]
            .split(',')
            .map(|n| n.trim().parse().unwrap())
            .collect();
        nums[4] * 256 + nums[5]
    }
}

/// Waits (bounded) until a new control connection is welcomed with 220.
async fn welcomed_again(addr: std::net::SocketAddr) -> bool {
    for _ in 0..100 {
        let (_c, greeting) = Control::connect(addr).await;
        if greeting.starts_with("220") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_a_reset_stores_nothing_and_frees_its_session() {
    let t = ftp_server(|s| s.ftp.max_sessions = 1).await;
    let addr = t.server.ftp_addr.unwrap();
    let (user, pw) = t.server.provisioning_login.clone().unwrap();
    {
        let (mut c, greeting) = Control::connect(addr).await;
        assert!(greeting.starts_with("220"), "{greeting}");
        c.login(&user, &pw).await;
        let mut data = c.pasv().await;
        c.writer
            .write_all(format!("STOR {MAC}-app.log\r\n").as_bytes())
            .await
            .unwrap();
        let r = c.reply().await;
        assert!(r.starts_with("150") || r.starts_with("125"), "{r}");
        data.write_all(&[b'l'; 10_000]).await.unwrap();
        data.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The phone loses power: the connection is reset, not closed.
        socket2::SockRef::from(&data)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(data);
        let r = c.reply().await;
        assert!(!r.starts_with("226"), "a reset upload is not complete: {r}");
    }
    assert!(
        welcomed_again(addr).await,
        "the only session slot is free again"
    );
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_get_errors_and_the_door_keeps_serving() {
    let t = ftp_server(|_| {}).await;
    let addr = t.server.ftp_addr.unwrap();
    let (user, pw) = t.server.provisioning_login.clone().unwrap();
    // Not UTF-8: an error, and the connection is closed.
    let (mut c, _) = Control::connect(addr).await;
    let r = c.send_raw(b"\xff\xfe\x00garbage\r\n").await;
    assert!(r.is_empty() || r.starts_with('5'), "not UTF-8: {r}");
    // A multi-line reply (STAT) is read whole: the next command gets its own reply.
    let (mut c, _) = Control::connect(addr).await;
    c.login(&user, &pw).await;
    let stat = c.cmd("STAT").await;
    assert!(stat.starts_with("211"), "{stat}");
    let r = c.cmd("NOOP").await;
    assert!(r.starts_with("200"), "the reply after STAT's: {r}");
    let (mut c, _) = Control::connect(addr).await;
    for (input, why) in [
        (&b"RETR 000000000000.cfg\r\n"[..], "before login"),
        (b"NOSUCHCOMMAND x\r\n", "unknown command"),
    ] {
        let r = c.send_raw(input).await;
        assert!(r.starts_with('5'), "{why}: {r}");
    }
    c.login(&user, &pw).await;
    for (line, why) in [
        ("SIZE ../../../etc/passwd", "traversal"),
        ("SIZE 0004f2aa814c-..%2fx.cfg", "odd name"),
        ("CWD /nonexistent", "no such directory"),
        ("MKD x", "no directories made"),
        ("DELE 000000000000.cfg", "no deletes"),
        ("SITE CHMOD 777 000000000000.cfg", "no site commands"),
    ] {
        let r = c.cmd(line).await;
        assert!(r.starts_with('4') || r.starts_with('5'), "{why}: {r}");
    }
    let long = format!("SIZE {}\r\n", "a".repeat(20_000));
    let r = c.send_raw(long.as_bytes()).await;
    assert!(r.is_empty() || r.starts_with('5'), "an over-long line: {r}");
    assert!(welcomed_again(addr).await);
    let (mut c, _) = Control::connect(addr).await;
    c.login(&user, &pw).await;
    let r = c.cmd("SIZE 000000000000.cfg").await;
    assert!(r.starts_with("213"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_the_cap_are_told_to_come_back() {
    let t = ftp_server(|s| s.ftp.max_sessions = 1).await;
    let addr = t.server.ftp_addr.unwrap();
    let (_first, greeting) = Control::connect(addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let (_second, refused) = Control::connect(addr).await;
    assert!(refused.starts_with("421"), "{refused}");
}

#[tokio::test]
async fn ftps_settings_that_cannot_work_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = polyprov_server::Settings::loopback(dir.path().join("data"));
    s.ftp.listen = Some("127.0.0.1:0".parse().unwrap());
    s.ftp.require_tls = true;
    let e = polyprov_server::start(s.clone()).await.err().unwrap();
    assert!(format!("{e:#}").contains("require_tls"), "{e:#}");
    s.ftp.tls_cert = Some(PathBuf::from("/nonexistent/cert.pem"));
    s.ftp.tls_key = Some(PathBuf::from("/nonexistent/key.pem"));
    let e = polyprov_server::start(s).await.err().unwrap();
    assert!(format!("{e:#}").contains("/nonexistent/cert.pem"), "{e:#}");
}

/// Verbs a fuzzed session picks from; arguments are arbitrary.
const VERBS: &[&str] = &[
    "USER", "PASS", "RETR", "STOR", "APPE", "SIZE", "MDTM", "LIST", "NLST", "MLSD", "MLST", "CWD",
    "CDUP", "PWD", "TYPE", "PASV", "EPSV", "REST", "DELE", "MKD", "RMD", "RNFR", "RNTO", "FEAT",
    "OPTS", "SYST", "NOOP", "STAT", "HELP", "AUTH", "PBSZ", "PROT", "CCC", "ABOR", "SITE", "ALLO",
    "MODE", "STRU", "ACCT",
];

fn command_line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let no_newline = |v: Vec<u8>| v.into_iter().filter(|b| *b != b'\n').collect::<Vec<u8>>();
    prop_oneof![
        // A known verb with a printable argument (paths, numbers, junk).
        (proptest::sample::select(VERBS), "[ -~]{0,80}")
            .prop_map(|(v, a)| format!("{v} {a}").into_bytes()),
        // The factory login's pieces, so sessions get past login.
        Just(b"USER PlcmSpIp".to_vec()),
        Just(b"PASS PlcmSpIp".to_vec()),
        // Anything at all on one line.
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(no_newline),
    ]
}

/// Property: whatever a client sends, each line gets a well-formed reply (three digits) or the
/// connection is closed; the door keeps serving; nothing is stored.
#[test]
fn any_command_line_gets_a_reply_or_a_close() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(ftp_server(|_| {}));
    let addr = t.server.ftp_addr.unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(command_line(), 1..10);
    runner
        .run(&strategy, |lines| {
            rt.block_on(async {
                let (mut c, greeting) = Control::connect(addr).await;
                assert!(greeting.starts_with("220"), "{greeting}");
                for line in &lines {
                    let mut bytes = line.clone();
                    bytes.extend_from_slice(b"\r\n");
                    if c.writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                    let reply = c.reply().await;
                    if reply.is_empty() {
                        break; // closed by the server
                    }
                    let code = reply.as_bytes();
                    assert!(
                        code.len() >= 4 && code[..3].iter().all(u8::is_ascii_digit),
                        "{:?} got {reply:?}",
                        String::from_utf8_lossy(line)
                    );
                }
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        assert!(welcomed_again(addr).await);
        let (mut c, _) = Control::connect(addr).await;
        c.login("PlcmSpIp", "PlcmSpIp").await;
        assert!(c.cmd("SIZE 000000000000.cfg").await.starts_with("213"));
    });
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
}

/// Another host that races the phone to the announced passive port gets nothing; the phone gets
/// its file. (Loopback has many addresses: the "other host" connects from 127.0.0.2.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_data_connections_come_only_from_the_control_address() {
    let t = ftp_server(|_| {}).await;
    let addr = t.server.ftp_addr.unwrap();
    let (mut c, _) = Control::connect(addr).await;
    c.login("PlcmSpIp", "PlcmSpIp").await;
    let data_port = c.pasv_port().await;
    // The intruder tries first.
    let intruder = tokio::spawn(async move {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        s.connect(([127, 0, 0, 1], data_port).into()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut data = tokio::net::TcpStream::connect(("127.0.0.1", data_port))
        .await
        .unwrap();
    c.retr_master(&mut data).await;
    let stole = intruder.is_finished() && matches!(intruder.await, Ok(Ok(_)));
    assert!(!stole, "the intruder's connection was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_sessions() {
    let t = ftp_server(|_| {}).await;
    let addr = t.server.ftp_addr.unwrap();
    let (mut c, _) = Control::connect(addr).await;
    c.login("PlcmSpIp", "PlcmSpIp").await;
    let TestServer {
        server, dir: _dir, ..
    } = t;
    server.shutdown().await;
    // The next read ends: the server closed the connection (a bounded wait, not a timing check).
    assert_eq!(c.reply().await, "");
}

/// The public factory login cannot be used to hoard passive ports: one address gets only so many
/// sessions, a session holds one port at a time, and a port nobody connects to is closed after
/// `passive_timeout_secs` — so a phone on another address still gets its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ports_cannot_be_hoarded() {
    // Four passive ports in all; three sessions per address. The four are below Linux's
    // ephemeral range (32768–60999), so that no client socket of a parallel test takes one,
    // and free when the test starts.
    let first = (20_000u16..30_000)
        .step_by(4)
        .skip(usize::from(std::process::id() as u16 % 2_000))
        .chain((20_000u16..30_000).step_by(4))
        .find(|p| (*p..*p + 4).all(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()))
        .unwrap();
    let t = ftp_server(move |s| {
        s.ftp.passive_ports = [first, first + 3];
        s.ftp.max_sessions_per_address = 3;
        s.ftp.passive_timeout_secs = 1;
    })
    .await;
    let addr = t.server.ftp_addr.unwrap();
    let mut hoarders = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let (mut c, greeting) = Control::connect(addr).await;
        if greeting.starts_with("421") {
            refused += 1;
            continue;
        }
        c.login("PlcmSpIp", "PlcmSpIp").await;
        // Asking again and again holds one port per session, not one per PASV.
        for _ in 0..5 {
            c.pasv_port().await;
        }
        hoarders.push(c);
    }
    assert_eq!((hoarders.len(), refused), (3, 7));
    // A phone on another address gets a port and its file while the hoarders are connected.
    let (mut phone, greeting) = Control::connect_from([127, 0, 0, 2], addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    phone.login("PlcmSpIp", "PlcmSpIp").await;
    let port = phone.pasv_port().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
    let mut data = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    phone.retr_master(&mut data).await;
    // A port offered and never used is closed again: connecting to it is refused.
    let unused = hoarders[0].pasv_port().await;
    let mut closed = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::net::TcpStream::connect(("127.0.0.1", unused))
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "an unused passive port stayed open");
}

/// Large FTPS uploads arrive whole, every time: curl writes a log, closes the data connection,
/// and the server stores all of it. (The server's TLS 1.3 session tickets on the data
/// connection, which an uploading client never reads, turned its close into a reset that lost
/// the end of about one upload in three.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_ftps_uploads_are_stored_every_time() {
    let pki = tempfile::tempdir().unwrap();
    let t = ftp_server(pki_settings(pki.path(), true)).await;
    let port = t.server.ftp_addr.unwrap().port();
    let prov = login(&t);
    let ca = pki.path().join("ca.pem");
    let up = t.dir.path().join("big.log");
    let line = "boot log line with some text to fill the upload\n";
    std::fs::write(&up, line.repeat(900_000 / line.len())).unwrap();
    let size = std::fs::metadata(&up).unwrap().len();
    let (ca2, up2) = (ca.clone(), up.clone());
    blocking(move || {
        for i in 0..6 {
            let o = curl(
                port,
                &prov,
                &format!("{MAC}-app.log"),
                &[
                    "--ssl-reqd",
                    "--cacert",
                    ca2.to_str().unwrap(),
                    "-T",
                    up2.to_str().unwrap(),
                ],
            );
            assert!(o.status.success(), "upload {i}: {}", text(&o));
        }
    })
    .await;
    // Every upload appended whole.
    let stored = t
        .upload_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("app.log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum::<u64>();
    assert_eq!(stored, 6 * size);
}

/// A device's own login (user = its MAC) works over FTP as over HTTP: its files, not another's;
/// once used, the shared login no longer opens them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_own_login_over_ftp() {
    let t = ftp_server(|_| {}).await;
    let port = t.server.ftp_addr.unwrap().port();
    for mac in [MAC, "0004f2aa9999"] {
        let (s, _) = t
            .admin_json(
                reqwest::Method::PUT,
                &format!("/api/v1/devices/{mac}"),
                Some(serde_json::json!({"admin_password": "Ftp-own"})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let own = t
        .get(&format!("/{MAC}-polyprov.cfg"))
        .await
        .text()
        .await
        .unwrap();
    let password = common::attributes(&own)["device.prov.password"].clone();
    let shared = login(&t);
    let mine = format!("{MAC}:{password}");
    let (first, other, shared_after) = blocking(move || {
        (
            curl(port, &mine, &format!("{MAC}-polyprov.cfg"), &[]),
            curl(port, &mine, "0004f2aa9999-polyprov.cfg", &[]),
            curl(port, &shared, &format!("{MAC}-polyprov.cfg"), &[]),
        )
    })
    .await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("Ftp-own"));
    assert!(
        !other.status.success() && !text(&other).contains("Ftp-own"),
        "{}",
        text(&other)
    );
    assert!(!shared_after.status.success(), "{}", text(&shared_after));
    t.assert_metric("polyprov_security_events_total{event=\"wrong_device_login\"} 1")
        .await;
}
