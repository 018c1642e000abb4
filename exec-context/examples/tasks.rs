//! An asyncio-style server on a tokio multi-thread runtime: each request handler sets a
//! request id in a context variable, and every log line — from the handler, from sub-tasks it
//! spawns and from blocking work it hands to the blocking pool — finds that id without it
//! being passed around, whichever thread runs the code.
//!
//! ```text
//! cargo run -p exec-context --example tasks --features tokio
//! ```

#[cfg(feature = "tokio")]
mod server {
    use std::sync::{Arc, Mutex};

    use contextvars::ContextVar;

    static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");

    /// One log line: which request the code was working for, what the context said, and
    /// where the line was written.
    struct Line {
        expected: u32,
        request_id: Option<u32>,
        stage: &'static str,
        thread: String,
    }

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<Line>>>);

    impl Log {
        /// Logs like a logging filter would: the request id comes from the context.
        fn info(&self, expected: u32, stage: &'static str) {
            self.0.lock().unwrap().push(Line {
                expected,
                request_id: REQUEST_ID.get(),
                stage,
                thread: format!("{:?}", std::thread::current().id()),
            });
        }
    }

    async fn load_user(request: u32, log: Log) -> String {
        log.info(request, "2 sub-task: load user");
        tokio::task::yield_now().await;
        log.info(request, "3 sub-task: user loaded");
        format!("user-{request}")
    }

    fn write_audit_record(request: u32, user: &str, log: &Log) {
        log.info(request, "4 blocking: audit record");
        assert!(user.ends_with(&request.to_string()));
    }

    async fn handle_request(request: u32, log: Log) {
        REQUEST_ID.set(request);
        log.info(request, "1 handler: start");
        let user = exec_context::tokio::spawn(load_user(request, log.clone()))
            .await
            .expect("the sub-task completes");
        let blocking_log = log.clone();
        exec_context::tokio::spawn_blocking(move || {
            write_audit_record(request, &user, &blocking_log);
        })
        .await
        .expect("the blocking job completes");
        // Plain tokio::spawn_blocking does not carry the context.
        let plain = tokio::task::spawn_blocking(|| REQUEST_ID.get())
            .await
            .expect("the blocking job completes");
        assert_eq!(plain, None);
        log.info(request, "5 handler: done");
    }

    pub fn main() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("the runtime starts");
        let log = Log::default();
        const REQUESTS: u32 = 5;

        runtime.block_on(async {
            // The "server": one task per incoming request, all interleaved on two workers.
            let handlers: Vec<_> = (1..=REQUESTS)
                .map(|request| exec_context::tokio::spawn(handle_request(request, log.clone())))
                .collect();
            for handler in handlers {
                handler.await.expect("the handler completes");
            }
            // No request's id leaked into the server's context.
            assert_eq!(REQUEST_ID.get(), None);
        });
        drop(runtime);

        let mut lines = std::mem::take(&mut *log.0.lock().unwrap());
        lines.sort_by(|a, b| (a.expected, a.stage).cmp(&(b.expected, b.stage)));
        for line in &lines {
            let id = line
                .request_id
                .map_or("none".to_string(), |id| id.to_string());
            println!("[request_id={id}] {:<26} on {}", line.stage, line.thread);
        }
        assert_eq!(lines.len(), 5 * REQUESTS as usize);
        for line in &lines {
            assert_eq!(line.request_id, Some(line.expected), "{}", line.stage);
        }
        println!("all {} log lines carried their request id", lines.len());
    }
}

fn main() {
    #[cfg(feature = "tokio")]
    server::main();
    #[cfg(not(feature = "tokio"))]
    println!("this example needs the `tokio` feature: cargo run --example tasks --features tokio");
}
