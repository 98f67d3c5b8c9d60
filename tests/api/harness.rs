//! The app under test, in-process: the real store, engine, router and background
//! jobs, served on 127.0.0.1:0 over a fresh SQLite file in a fresh directory or a
//! fresh PostgreSQL database (created on `PAYGROUND_TEST_DATABASE_URL`, dropped
//! afterwards). Tests talk to it over HTTP as a client would, and read its
//! database directly to see what a request left behind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use payground::engine::Engine;
use payground::http::app::App;
use payground::http::router::router;
use payground::jobs::webhooks::{self, WebhookSettings};

const DATABASE_URL_VAR: &str = "PAYGROUND_TEST_DATABASE_URL";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per store, as `<name>::sqlite` and
/// `<name>::postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::harness::Backend::Postgres).await
            }
        }
    )*};
}

/// What a test may change about the server it gets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long bank debits stay `processing` before the settlement job settles them.
    pub settlement_delay: Duration,
    pub webhooks: WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // Long enough that nothing settles by itself during a test; tests settle
            // with the test helper.
            settlement_delay: Duration::from_secs(3600),
            webhooks: WebhookSettings {
                timeout: Duration::from_secs(2),
                ..WebhookSettings::default()
            },
        }
    }
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub account: String,
    pub secret_key: String,
    pub publishable_key: String,
    pub client: reqwest::Client,
    /// The app's database, read behind its back.
    pub db: Database,
    tasks: Vec<JoinHandle<()>>,
    /// Webhook delivery and the event purge; they stop with the test's runtime.
    _jobs: webhooks::Jobs,
    /// Scheduled work (bank-debit settlement); it stops with the test's runtime.
    _scheduler: payground::jobs::scheduler::Scheduler,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the app on a fresh store with the default settings; `None` (after
/// saying why) when the PostgreSQL variant has no server to run on.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Settings::default()).await
}

pub async fn spawn_app_with(backend: Backend, settings: Settings) -> Option<TestApp> {
    let (url, db) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("payground-api-")
                .tempdir()
                .expect("a temporary directory");
            let path = dir.path().join("payground.db");
            let url = format!("sqlite:{}", path.display());
            (url, Location::Sqlite { path, _dir: dir })
        }
        Backend::Postgres => {
            let admin_url = match std::env::var(DATABASE_URL_VAR) {
                Ok(url) if !url.trim().is_empty() => url,
                _ => {
                    eprintln!(
                        "skipping the PostgreSQL variant: {DATABASE_URL_VAR} is not set \
                         (e.g. postgres://postgres@127.0.0.1:5432/test)"
                    );
                    return None;
                }
            };
            let name = format!("payground_api_{:016x}", rand::random::<u64>());
            let admin = pg_connect(&admin_url).await;
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
            let url = with_database(&admin_url, &name);
            (
                url.clone(),
                Location::Postgres(PgDatabase { admin_url, name }),
            )
        }
    };
    let store = payground::store::open(&url)
        .await
        .unwrap_or_else(|e| panic!("open the store at {url}: {e:?}"));
    let account = payground::accounts::ensure_default(&store, None, None)
        .await
        .expect("the default account");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr: SocketAddr = listener.local_addr().expect("the bound address");
    let address = format!("http://{addr}");
    let engine = Arc::new(Engine::new(
        store.clone(),
        address.clone(),
        Arc::new(payground::ctx::Settings {
            settlement_delay: settings.settlement_delay,
        }),
    ));
    let app = App::new(engine.clone(), None);
    let mut tasks = Vec::new();
    let scheduler = payground::jobs::scheduler::start(engine);
    let jobs = webhooks::start(store.clone(), app.webhooks.clone(), settings.webhooks)
        .expect("start the webhook jobs");
    let served = router(app);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, served).await {
            eprintln!("the test server stopped: {e}");
        }
    }));
    let db = Database::open(db).await;
    // Redirects are answers to look at (the hosted page's 303), not to follow.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    Some(TestApp {
        address,
        account: account.id,
        secret_key: account.secret_key,
        publishable_key: account.publishable_key,
        client,
        db,
        tasks,
        _jobs: jobs,
        _scheduler: scheduler,
    })
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    Secret,
    Publishable,
    /// HTTP Basic with the secret key as the user name.
    Basic,
    /// No Authorization header at all.
    None,
    /// This exact Authorization header.
    Header(String),
}

/// One request to the app.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    /// Form fields (a POST's body) or query parameters (GET, DELETE).
    pub params: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub auth: Auth,
    pub headers: Vec<(String, String)>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            params: Vec::new(),
            idempotency_key: None,
            auth: Auth::Secret,
            headers: Vec::new(),
        }
    }

    pub fn params<K: Into<String>, V: Into<String>>(
        mut self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Call {
        self.params
            .extend(params.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Call {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn auth(mut self, auth: Auth) -> Call {
        self.auth = auth;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `METHOD /path?a=b` (or with the body), for messages.
    pub fn describe(&self) -> String {
        let params = form(&self.params);
        let key = match &self.idempotency_key {
            Some(k) => format!(" [Idempotency-Key {k}]"),
            None => String::new(),
        };
        if params.is_empty() {
            format!("{} {}{key}", self.method, self.path)
        } else if self.method == Method::POST {
            format!("{} {} {params}{key}", self.method, self.path)
        } else {
            format!("{} {}?{params}{key}", self.method, self.path)
        }
    }
}

/// Form-encodes fields in order, brackets left as they are.
pub fn form(params: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    out.finish()
}

/// An answer: status, headers and the JSON body (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> &Value {
        &self.body["error"]
    }

    pub fn error_param(&self) -> Option<&str> {
        self.body["error"]["param"].as_str()
    }

    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    pub fn str(&self, field: &str) -> &str {
        self.body[field].as_str().unwrap_or_default()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, call: &Call) -> Reply {
        let mut url = self.url(&call.path);
        if !call.params.is_empty() && call.method != Method::POST {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&form(&call.params));
        }
        let mut request = self.client.request(call.method.clone(), &url);
        request = match &call.auth {
            Auth::Secret => request.bearer_auth(&self.secret_key),
            Auth::Publishable => request.bearer_auth(&self.publishable_key),
            Auth::Basic => request.basic_auth(&self.secret_key, Some("")),
            Auth::None => request,
            Auth::Header(value) => request.header("authorization", value),
        };
        if call.method == Method::POST {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&call.params));
        }
        if let Some(key) = &call.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", call.describe()));
        reply(response).await
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Reply {
        self.send(&Call::new(Method::GET, path).params(params.iter().copied()))
            .await
    }

    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> Reply {
        self.send(&Call::new(Method::POST, path).params(params.iter().copied()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(&Call::new(Method::DELETE, path)).await
    }

    /// POST with a JSON body instead of a form.
    pub async fn post_json(&self, path: &str, body: &impl Serialize) -> Reply {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.secret_key)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        reply(response).await
    }

    /// The object a successful call answers with; fails the test otherwise.
    pub async fn ok(&self, call: Call) -> Value {
        let reply = self.send(&call).await;
        assert_eq!(reply.status, 200, "{}: {}", call.describe(), reply.text);
        reply.body
    }

    /// `POST path` that must succeed; its object.
    pub async fn create(&self, path: &str, params: &[(&str, &str)]) -> Value {
        self.ok(Call::new(Method::POST, path).params(params.iter().copied()))
            .await
    }

    /// The account's events, oldest first (the newest 100).
    pub async fn events(&self) -> Vec<Value> {
        let reply = self.get("/v1/events", &[("limit", "100")]).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let mut events = reply.body["data"].as_array().cloned().expect("a list");
        events.reverse();
        events
    }

    /// The types of the account's events, oldest first.
    pub async fn event_types(&self) -> Vec<String> {
        self.events()
            .await
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }

    /// The types of the events about a PaymentIntent (its own and its charges'),
    /// oldest first.
    pub async fn events_of(&self, payment_intent: &str) -> Vec<String> {
        self.events()
            .await
            .iter()
            .filter(|e| {
                let object = &e["data"]["object"];
                object["id"] == payment_intent || object["payment_intent"] == payment_intent
            })
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

// ---- the database, read directly ---------------------------------------------------

enum Location {
    Sqlite {
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(PgDatabase),
}

/// A scratch PostgreSQL database, dropped with it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a
        // private one on its own thread. FORCE ends the app's pooled connections.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await?;
                let driver = tokio::spawn(connection);
                let result = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                drop(client);
                let _ = driver.await;
                result.map_err(anyhow::Error::from)
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR}: {e:?}"));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("test database connection error: {e}");
        }
    });
    client
}

/// `url` with its database name replaced by `name`, query parameters kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// A direct connection to the app's database.
pub struct Database {
    conn: Conn,
    census_sql: OnceLock<String>,
    // Dropped last: the directory or the database goes once nothing reads it.
    location: Location,
}

enum Conn {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(tokio_postgres::Client),
}

/// What the database holds, per table (and per `kind` where a table has one):
/// its row count and, per column, the sum of its integers or of its values'
/// lengths. Any insert, delete or update of a counter, version, status or body
/// shows; equal censuses mean a request left nothing behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census(pub BTreeMap<String, String>);

impl Census {
    /// The entries that differ, as `table: before -> after`.
    pub fn diff(&self, after: &Census) -> Vec<String> {
        let mut keys: Vec<&String> = self.0.keys().chain(after.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (self.0.get(k), after.0.get(k));
                (a != b).then(|| {
                    format!(
                        "{k}: {} -> {}",
                        a.map_or("(none)", String::as_str),
                        b.map_or("(none)", String::as_str)
                    )
                })
            })
            .collect()
    }

    /// The tables counted.
    pub fn tables(&self) -> Vec<&str> {
        let mut tables: Vec<&str> = self
            .0
            .keys()
            .map(|k| k.split('[').next().unwrap_or(k))
            .collect();
        tables.dedup();
        tables
    }

    /// Rows of one table (or `table[kind]`).
    pub fn rows(&self, key: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|s| s.strip_prefix("rows="))
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Database {
    async fn open(location: Location) -> Database {
        let conn = match &location {
            Location::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .expect("open the SQLite file");
                Conn::Sqlite(Mutex::new(conn))
            }
            Location::Postgres(db) => {
                Conn::Postgres(pg_connect(&with_database(&db.admin_url, &db.name)).await)
            }
        };
        Database {
            conn,
            census_sql: OnceLock::new(),
            location,
        }
    }

    /// Rows of text: every column of `sql` must be text (cast it in the query).
    pub async fn texts(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.conn {
            Conn::Sqlite(conn) => {
                let conn = conn.lock().expect("the SQLite connection");
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |row| {
                        (0..columns)
                            .map(|i| {
                                Ok(match row.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => None,
                                    rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                                    rusqlite::types::ValueRef::Real(x) => Some(x.to_string()),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Some(String::from_utf8_lossy(t).into_owned())
                                    }
                                    rusqlite::types::ValueRef::Blob(b) => {
                                        Some(format!("<{} bytes>", b.len()))
                                    }
                                })
                            })
                            .collect::<Result<Vec<_>, rusqlite::Error>>()
                    })
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Conn::Postgres(client) => client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.get::<_, Option<String>>(i))
                        .collect()
                })
                .collect(),
        }
    }

    /// Every table of the store and its columns, as `(table, [(column, type)])`.
    async fn schema(&self) -> Vec<(String, Vec<(String, String)>)> {
        let tables: Vec<String> = match &self.conn {
            Conn::Sqlite(_) => self.texts(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .await,
            Conn::Postgres(_) => self.texts(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
            )
            .await,
        }
        .into_iter()
        .filter_map(|mut r| r.remove(0))
        .collect();
        let mut out = Vec::new();
        for table in tables {
            let sql = match &self.conn {
                Conn::Sqlite(_) => format!("SELECT name, type FROM pragma_table_info('{table}') ORDER BY cid"),
                Conn::Postgres(_) => format!(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
                ),
            };
            let columns = self
                .texts(&sql)
                .await
                .into_iter()
                .map(|r| {
                    let mut r = r.into_iter().map(Option::unwrap_or_default);
                    (r.next().unwrap_or_default(), r.next().unwrap_or_default())
                })
                .collect();
            out.push((table, columns));
        }
        out
    }

    /// One query that summarises every table; see [`Census`].
    async fn census_query(&self) -> String {
        if let Some(sql) = self.census_sql.get() {
            return sql.clone();
        }
        let sqlite = matches!(self.conn, Conn::Sqlite(_));
        let mut parts = Vec::new();
        for (table, columns) in self.schema().await {
            let mut summary = vec!["'rows=' || count(*)".to_string()];
            for (column, kind) in &columns {
                let kind = kind.to_ascii_lowercase();
                let quoted = format!("\"{column}\"");
                let value = if kind.contains("int") || kind.contains("serial") {
                    format!("coalesce(sum({quoted}), 0)")
                } else if kind == "boolean" {
                    format!("coalesce(sum({quoted}::int), 0)")
                } else if sqlite {
                    format!("coalesce(sum(length({quoted})), 0)")
                } else {
                    format!("coalesce(sum(octet_length({quoted}::text)), 0)")
                };
                summary.push(format!("' {column}=' || {value}"));
            }
            let summary = summary.join(" || ");
            let has_kind = columns.iter().any(|(c, _)| c == "kind");
            let label = if sqlite { "'{t}'" } else { "'{t}'::text" }.replace("{t}", &table);
            parts.push(format!("SELECT {label}, {summary} FROM \"{table}\""));
            if has_kind {
                let label = format!("'{table}[' || kind || ']'");
                parts.push(format!(
                    "SELECT {label}, {summary} FROM \"{table}\" GROUP BY kind"
                ));
            }
        }
        let sql = parts.join(" UNION ALL ");
        let _ = self.census_sql.set(sql.clone());
        sql
    }

    pub async fn census(&self) -> Census {
        let sql = self.census_query().await;
        Census(
            self.texts(&sql)
                .await
                .into_iter()
                .map(|r| {
                    let mut r = r.into_iter().map(Option::unwrap_or_default);
                    (r.next().unwrap_or_default(), r.next().unwrap_or_default())
                })
                .collect(),
        )
    }

    /// Holds the database's write lock until the hold is released: commits wait
    /// behind it (SQLite's writer on its busy timeout, PostgreSQL's on the
    /// objects table), while reads go on.
    pub async fn hold_writes(&self) -> WriteHold {
        match &self.location {
            Location::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
                conn.busy_timeout(Duration::from_secs(10))
                    .expect("a busy timeout");
                conn.execute_batch("BEGIN IMMEDIATE")
                    .expect("take the write lock");
                WriteHold::Sqlite(conn)
            }
            Location::Postgres(db) => {
                let client = pg_connect(&with_database(&db.admin_url, &db.name)).await;
                client
                    .batch_execute("BEGIN; LOCK TABLE objects IN EXCLUSIVE MODE")
                    .await
                    .expect("lock the objects table");
                WriteHold::Postgres(client)
            }
        }
    }

    /// Whether a commit is waiting for a [`WriteHold`] (PostgreSQL shows it; on
    /// SQLite, a moment is given instead).
    pub async fn wait_for_blocked_commit(&self) {
        match &self.conn {
            Conn::Sqlite(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Conn::Postgres(client) => {
                for _ in 0..500 {
                    let waiting: i64 = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity
                             WHERE datname = current_database() AND wait_event_type = 'Lock'",
                            &[],
                        )
                        .await
                        .expect("pg_stat_activity")
                        .get(0);
                    if waiting > 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("no commit waited for the held lock");
            }
        }
    }

    /// Waits until the census stops changing (background work such as webhook
    /// deliveries has settled), for up to `limit`.
    pub async fn settled_census(&self, limit: Duration) -> Census {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = self.census().await;
        let mut calm = 0;
        while calm < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.census().await;
            if now == last {
                calm += 1;
            } else {
                calm = 0;
                last = now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the database kept changing for {limit:?}"
            );
        }
        last
    }
}

/// The write lock a test holds; see [`Database::hold_writes`].
pub enum WriteHold {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl WriteHold {
    pub async fn release(self) {
        match self {
            WriteHold::Sqlite(conn) => conn.execute_batch("ROLLBACK").expect("release the lock"),
            WriteHold::Postgres(client) => client
                .batch_execute("ROLLBACK")
                .await
                .expect("release the lock"),
        }
    }
}

// ---- a webhook receiver ----------------------------------------------------------------

/// A local HTTP endpoint that answers 200 to every POST and counts them.
pub struct Receiver {
    pub url: String,
    hits: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let routes = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, routes).await;
        });
        Receiver {
            url: format!("http://{addr}/webhook"),
            hits,
            _task: AbortOnDrop(task),
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` deliveries have arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.hits() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} webhook deliveries arrived in {limit:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
