//! A real Redis for the fleet tests: Debian's `redis-server`, started here on a Unix
//! socket in a temporary directory (or on a TLS port), with a password; killed, stopped
//! (SIGSTOP: a store that hangs), restarted on the same address.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    /// What the sidecars' `fleet.redis` says.
    pub url: String,
    /// What this harness's own client uses (a TLS store is asked over its own socket).
    admin_socket: PathBuf,
    pub password: String,
}

/// Whether `redis-server` is here (CI installs it; a developer machine may skip).
pub fn available() -> bool {
    super::have_tool(
        "redis-server",
        &["--version"],
        "apt-get install redis-server",
    )
}

impl Redis {
    /// On a Unix socket, with `password`.
    pub fn start(password: &str) -> Redis {
        Self::launch(password, None)
    }

    /// On a TLS port (the fixture server certificate, for 127.0.0.1), with `password`;
    /// its Unix socket stays, plain, for the test's own commands.
    pub fn start_tls(password: &str) -> Redis {
        Self::launch(password, Some(super::free_port()))
    }

    fn launch(password: &str, tls_port: Option<u16>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocketperm",
            "700",
        ]
        .map(String::from)
        .to_vec();
        args.extend([
            "--unixsocket".into(),
            socket.display().to_string(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--logfile".into(),
            dir.path().join("redis.log").display().to_string(),
            "--requirepass".into(),
            password.into(),
        ]);
        let url = match tls_port {
            Some(port) => {
                let f = |n: &str| super::tls_fixture(n).display().to_string();
                args.extend([
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    f("server.crt"),
                    "--tls-key-file".into(),
                    f("server.key"),
                    "--tls-ca-cert-file".into(),
                    f("ca.crt"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]);
                format!("rediss://127.0.0.1:{port}/0")
            }
            None => format!("unix://{}", socket.display()),
        };
        let mut r = Redis {
            child: None,
            dir,
            args,
            url,
            admin_socket: socket,
            password: password.into(),
        };
        r.restart();
        r
    }

    /// Starts it again on the same address (its data gone: nothing is saved).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_cmd(&["PING"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT: a store whose connections stay open and never answer.
    pub fn pause(&self, stop: bool) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let signal = if stop { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn try_cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let url = format!("unix://{}", self.admin_socket.display());
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
        let redis = info.redis_settings().clone().set_password(&self.password);
        let client = redis::Client::open(info.set_redis_settings(redis))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// A command on the store, as an operator would run it.
    pub fn cmd(&self, args: &[&str]) -> redis::Value {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            redis::from_redis_value(self.cmd(&["KEYS", "*"])).unwrap_or_default();
        keys.sort();
        keys
    }

    /// Changes the password the store asks for (existing connections stay authenticated,
    /// as with Redis's own `CONFIG SET`), then drops every client connection.
    pub fn change_password(&mut self, new: &str) {
        self.cmd(&["CONFIG", "SET", "requirepass", new]);
        self.password = new.into();
        let _ = self.try_cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
