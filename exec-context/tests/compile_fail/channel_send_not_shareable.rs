// Channels take the same `Share` types as queues: a mutex is not one.
use exec_context::interpreters;

fn main() {
    let (send, _recv) = interpreters::channel();
    send.send_buffered(std::sync::Mutex::new(1)).unwrap();
}
