//! Load generator for the agent's S3 event webhook (`ferry-agent run`).
//!
//! C keep-alive HTTP/1.1 connections (one thread each) post MinIO-shaped
//! `{"Records":[...]}` bodies of R records back to back (or, with `--rate`,
//! on a fixed schedule), with unique keys and increasing sequencers so
//! nothing deduplicates. It stops by itself after `--warmup` + `--duration`
//! seconds or once `--events` events were sent, and prints one JSON object:
//! acknowledged (200) events and requests per second, ack latency
//! percentiles, 503s (each followed by a sleep of its Retry-After), other
//! statuses and I/O errors, events per second of each second measured, and
//! the generator's own CPU time.
//!
//! Latency is send -> whole answer read. With `--rate` it counts from the
//! request's scheduled send time instead, so time a request waited behind a
//! slow one on its connection is counted (no coordinated omission).
//!
//! Std only: the request is built once and only its fixed-width counters
//! are rewritten per request, so the generator costs little CPU beside the
//! agent on a small machine.
//!
//! ```text
//! webhook-load --addr 127.0.0.1:9120 --token-file webhook.token --bucket photos \
//!     --connections 16 --records 1 --duration 20 [--warmup 2] [--rate 30000] [--events N]
//! ```

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: webhook-load --addr HOST:PORT (--token T | --token-file F) [--bucket B] \
[--connections C] [--records R] [--duration S] [--warmup S] [--rate EVENTS_PER_S] [--events N] \
[--timeout S] [--run-id HEX]";

/// Digits of the per-connection request counter in keys and sequencers.
const COUNTER_DIGITS: usize = 12;
/// Longest Retry-After honoured, in seconds.
const MAX_RETRY_AFTER: u64 = 10;
/// Largest answer head or body accepted.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Clone)]
struct Options {
    addr: String,
    token: String,
    bucket: String,
    connections: usize,
    records: usize,
    duration: Duration,
    warmup: Duration,
    /// Events per second over all connections; 0: closed loop (back to back).
    rate: f64,
    /// Stop after sending this many events (0: no limit).
    events: u64,
    timeout: Duration,
    run_id: u32,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        addr: String::new(),
        token: String::new(),
        bucket: "photos".into(),
        connections: 16,
        records: 1,
        duration: Duration::from_secs(20),
        warmup: Duration::ZERO,
        rate: 0.0,
        events: 0,
        timeout: Duration::from_secs(30),
        // Keys of different runs against the same queue must differ.
        run_id: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d.as_nanos() as u32) ^ std::process::id().rotate_left(16))
            .unwrap_or(0),
    };
    let mut args = std::env::args().skip(1);
    let secs = |v: &str| -> Result<Duration, String> {
        let s: f64 = v
            .parse()
            .map_err(|_| format!("not a number of seconds: {v}"))?;
        if !(0.0..=86_400.0).contains(&s) {
            return Err(format!("seconds out of range: {v}"));
        }
        Ok(Duration::from_secs_f64(s))
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| -> Result<u64, String> {
            v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--addr" => o.addr = value,
            "--token" => o.token = value,
            "--token-file" => {
                o.token = std::fs::read_to_string(&value)
                    .map_err(|e| format!("{value}: {e}"))?
                    .trim()
                    .to_owned();
            }
            "--bucket" => o.bucket = value,
            "--connections" | "-c" => o.connections = number(&value)? as usize,
            "--records" | "-r" => o.records = number(&value)? as usize,
            "--duration" => o.duration = secs(&value)?,
            "--warmup" => o.warmup = secs(&value)?,
            "--rate" => {
                o.rate = value
                    .parse()
                    .map_err(|_| format!("--rate: not a number: {value}"))?;
            }
            "--events" => o.events = number(&value)?,
            "--timeout" => o.timeout = secs(&value)?,
            "--run-id" => {
                o.run_id = u32::from_str_radix(&value, 16)
                    .map_err(|_| format!("--run-id: not hex: {value}"))?;
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if o.addr.is_empty() {
        return Err(format!("--addr is required\n{USAGE}"));
    }
    if !(1..=4096).contains(&o.connections) {
        return Err("--connections must be 1..=4096".into());
    }
    if !(1..=10_000).contains(&o.records) {
        return Err("--records must be 1..=10000 (the webhook's limit)".into());
    }
    if o.bucket.is_empty() || o.bucket.bytes().any(|b| b == b'"' || b == b'\\') {
        return Err("--bucket must be a plain bucket name".into());
    }
    if o.token.bytes().any(|b| b.is_ascii_control()) {
        return Err("the token holds control characters".into());
    }
    if o.rate < 0.0 || !o.rate.is_finite() {
        return Err("--rate must be >= 0".into());
    }
    if o.duration.is_zero() && o.events == 0 {
        return Err("give --duration > 0 or --events".into());
    }
    Ok(o)
}

/// One request, built once: head and body in one buffer, with the offsets
/// of the fixed-width counters rewritten before each send.
struct Request {
    bytes: Vec<u8>,
    /// Per record: offset of the key's counter and of the sequencer.
    slots: Vec<(usize, usize)>,
}

impl Request {
    fn new(o: &Options, connection: usize) -> Request {
        let zeros = "0".repeat(COUNTER_DIGITS);
        let mut body =
            String::from(r#"{"EventName":"s3:ObjectCreated:Put","Key":"bench/load","Records":["#);
        let mut marks = Vec::with_capacity(o.records);
        for i in 0..o.records {
            if i > 0 {
                body.push(',');
            }
            // MinIO escapes '/' in keys: load/<run>/c<conn>/r<i>/<counter>.
            body.push_str(&format!(
                r#"{{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-23T10:00:00.000Z","eventName":"s3:ObjectCreated:Put","userIdentity":{{"principalId":"minio"}},"requestParameters":{{"sourceIPAddress":"127.0.0.1"}},"responseElements":{{"x-amz-request-id":"17A"}},"s3":{{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{{"name":"{bucket}","ownerIdentity":{{"principalId":"minio"}},"arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"load%2F{run:08x}%2Fc{connection:04}%2Fr{i:05}%2F"#,
                bucket = o.bucket,
                run = o.run_id,
            ));
            let key_at = body.len();
            body.push_str(&zeros);
            // Sequencer: run id, then the counter, then the record: increasing.
            body.push_str(&format!(
                r#"","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","contentType":"application/octet-stream","userMetadata":{{}},"sequencer":"{run:08X}"#,
                run = o.run_id
            ));
            let seq_at = body.len();
            body.push_str(&zeros);
            body.push_str(&format!(
                r#"{i:05X}"}}}},"source":{{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.0"}}}}"#
            ));
            marks.push((key_at, seq_at));
        }
        body.push_str("]}");
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nUser-Agent: webhook-load\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            o.addr,
            o.token,
            body.len()
        );
        let slots = marks
            .into_iter()
            .map(|(k, s)| (head.len() + k, head.len() + s))
            .collect();
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        Request { bytes, slots }
    }

    /// Writes `counter` into every record's key (decimal) and sequencer (hex).
    fn set_counter(&mut self, counter: u64) {
        let mut dec = [b'0'; COUNTER_DIGITS];
        let mut hex = [b'0'; COUNTER_DIGITS];
        let (mut d, mut h) = (counter, counter);
        for i in (0..COUNTER_DIGITS).rev() {
            dec[i] = b'0' + (d % 10) as u8;
            d /= 10;
            hex[i] = b"0123456789ABCDEF"[(h & 15) as usize];
            h >>= 4;
        }
        for &(k, s) in &self.slots {
            self.bytes[k..k + COUNTER_DIGITS].copy_from_slice(&dec);
            self.bytes[s..s + COUNTER_DIGITS].copy_from_slice(&hex);
        }
    }
}

/// A parsed answer.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    close: bool,
    /// `"queued"` and `"duplicates"` of a 200 body, when present.
    queued: Option<u64>,
    duplicates: Option<u64>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned number after `"name":` in a JSON body (no full parse).
fn json_number(body: &[u8], name: &str) -> Option<u64> {
    let at = find(body, format!("\"{name}\"").as_bytes())? + name.len() + 2;
    let rest = &body[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits: Vec<u8> = rest[start..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Reads one answer: head up to `\r\n\r\n`, then a Content-Length body.
/// `buf` keeps bytes read past the answer (none with one request in flight).
fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Answer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_ANSWER {
            return Err(bad("answer head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("answer head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_ascii_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("not an HTTP/1.x answer"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut length = 0usize;
    let mut retry_after = None;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked answers are not expected"));
        }
    }
    if length > MAX_ANSWER {
        return Err(bad("answer body too long"));
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside an answer body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + length];
    let (queued, duplicates) = if status == 200 {
        (json_number(body, "queued"), json_number(body, "duplicates"))
    } else {
        (None, None)
    };
    let answer = Answer {
        status,
        retry_after,
        close,
        queued,
        duplicates,
    };
    buf.drain(..head_end + length);
    Ok(answer)
}

#[derive(Default)]
struct Tally {
    /// Latency of each measured 200, in microseconds.
    latencies_us: Vec<u32>,
    requests_ok: u64,
    events_ok: u64,
    queued: u64,
    duplicates: u64,
    status_503: u64,
    status_other: u64,
    io_errors: u64,
    first_error: Option<String>,
    /// 200-acked events per measured second (by completion time).
    per_second: Vec<u64>,
    /// Requests sent during warm-up, and ones answered after the window.
    unmeasured: u64,
}

struct Clock {
    start: Instant,
    measure_from: Instant,
    measure_until: Instant,
}

fn connect(o: &Options) -> std::io::Result<TcpStream> {
    let addr = o.addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    })?;
    let stream = TcpStream::connect_timeout(&addr, o.timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(o.timeout))?;
    stream.set_write_timeout(Some(o.timeout))?;
    Ok(stream)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn worker(
    o: &Options,
    connection: usize,
    clock: &OnceLock<Clock>,
    budget: &AtomicU64,
    gates: &(Barrier, Barrier),
) -> Tally {
    let mut request = Request::new(o, connection);
    let mut stream = connect(o);
    // Every connection is open; then the main thread sets the clock.
    gates.0.wait();
    gates.1.wait();
    let Some(clock) = clock.get() else {
        return Tally::default();
    };
    let mut tally = Tally {
        per_second: vec![
            0;
            clock
                .measure_until
                .duration_since(clock.measure_from)
                .as_secs() as usize
                + 1
        ],
        ..Tally::default()
    };
    let events_per_request = o.records as u64;
    // Open loop: this connection's share of the rate, as a request interval.
    let interval = (o.rate > 0.0).then(|| {
        Duration::from_secs_f64(o.connections as f64 * events_per_request as f64 / o.rate)
    });
    // Stagger the connections' schedules over one interval.
    let mut scheduled = clock.start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(connection as f64 / o.connections as f64)
        });
    let mut buf = Vec::with_capacity(4096);
    let mut counter: u64 = 0;
    loop {
        if interval.is_some() {
            sleep_until(scheduled);
        }
        let sent = Instant::now();
        if sent >= clock.measure_until {
            break;
        }
        if o.events > 0 && budget.fetch_add(events_per_request, Ordering::Relaxed) >= o.events {
            break;
        }
        let since = if interval.is_some() { scheduled } else { sent };
        if let Some(i) = interval {
            scheduled += i;
        }
        let s = match &mut stream {
            Ok(s) => s,
            Err(e) => {
                tally.io_errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("connect: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                stream = connect(o);
                continue;
            }
        };
        request.set_counter(counter);
        counter += 1;
        let outcome = s
            .write_all(&request.bytes)
            .and_then(|()| read_answer(s, &mut buf));
        let done = Instant::now();
        let answer = match outcome {
            Ok(a) => a,
            Err(e) => {
                tally.io_errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
                buf.clear();
                stream = connect(o);
                continue;
            }
        };
        if answer.close {
            buf.clear();
            stream = connect(o);
        }
        let measured = done >= clock.measure_from && done < clock.measure_until;
        if !measured {
            tally.unmeasured += 1;
        }
        match answer.status {
            200 => {
                if measured {
                    tally.requests_ok += 1;
                    tally.events_ok += events_per_request;
                    tally.queued += answer.queued.unwrap_or(0);
                    tally.duplicates += answer.duplicates.unwrap_or(0);
                    let us = done.duration_since(since).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                    let second = done.duration_since(clock.measure_from).as_secs() as usize;
                    if let Some(slot) = tally.per_second.get_mut(second) {
                        *slot += events_per_request;
                    }
                }
            }
            503 => {
                tally.status_503 += 1;
                let wait =
                    Duration::from_secs(answer.retry_after.unwrap_or(1).min(MAX_RETRY_AFTER));
                sleep_until((done + wait).min(clock.measure_until));
                if let Some(i) = interval {
                    // Do not burst to catch up after the pause.
                    scheduled = scheduled.max(Instant::now() - i);
                }
            }
            _ => {
                tally.status_other += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("HTTP {}", answer.status));
            }
        }
    }
    tally
}

/// utime + stime of this process, in seconds (from /proc/self/stat).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let o = Arc::new(o);
    let gates = Arc::new((
        Barrier::new(o.connections + 1),
        Barrier::new(o.connections + 1),
    ));
    let budget = Arc::new(AtomicU64::new(0));
    let clock_cell: Arc<OnceLock<Clock>> = Arc::new(OnceLock::new());
    let mut handles = Vec::with_capacity(o.connections);
    for connection in 0..o.connections {
        let (o, gates, budget, clock_cell) =
            (o.clone(), gates.clone(), budget.clone(), clock_cell.clone());
        let handle = std::thread::Builder::new()
            .name(format!("conn-{connection}"))
            .stack_size(256 * 1024)
            .spawn(move || worker(&o, connection, &clock_cell, &budget, &gates));
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("cannot start a thread: {e}");
                // The started threads wait on the gates forever: leave.
                std::process::exit(1);
            }
        }
    }
    gates.0.wait();
    let cpu0 = own_cpu_seconds();
    let start = Instant::now();
    let run_for = if o.duration.is_zero() {
        // --events alone: still bounded.
        Duration::from_secs(3600)
    } else {
        o.duration
    };
    let _ = clock_cell.set(Clock {
        start,
        measure_from: start + o.warmup,
        measure_until: start + o.warmup + run_for,
    });
    gates.1.wait();
    let mut total = Tally::default();
    let mut per_second: Vec<u64> = Vec::new();
    for h in handles {
        let Ok(t) = h.join() else {
            eprintln!("a connection thread panicked");
            return ExitCode::FAILURE;
        };
        total.latencies_us.extend_from_slice(&t.latencies_us);
        total.requests_ok += t.requests_ok;
        total.events_ok += t.events_ok;
        total.queued += t.queued;
        total.duplicates += t.duplicates;
        total.status_503 += t.status_503;
        total.status_other += t.status_other;
        total.io_errors += t.io_errors;
        total.unmeasured += t.unmeasured;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
        if per_second.len() < t.per_second.len() {
            per_second.resize(t.per_second.len(), 0);
        }
        for (a, b) in per_second.iter_mut().zip(&t.per_second) {
            *a += b;
        }
    }
    let ended = Instant::now();
    let Some(clock) = clock_cell.get() else {
        return ExitCode::FAILURE;
    };
    // The window actually measured: up to the end of the last full request.
    let window = ended
        .min(clock.measure_until)
        .saturating_duration_since(clock.measure_from)
        .as_secs_f64()
        .max(1e-9);
    // Whole seconds only for the per-second figures.
    per_second.truncate(window.floor() as usize);
    let cpu = match (cpu0, own_cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "null".into(),
    };
    let mut sorted = total.latencies_us;
    sorted.sort_unstable();
    let mean = if sorted.is_empty() {
        0.0
    } else {
        sorted.iter().map(|&u| f64::from(u)).sum::<f64>() / sorted.len() as f64 / 1000.0
    };
    let mut by_second = per_second.clone();
    by_second.sort_unstable();
    let (ps_min, ps_median) = if by_second.is_empty() {
        (0, 0)
    } else {
        (by_second[0], by_second[by_second.len() / 2])
    };
    let timeline: Vec<String> = per_second.iter().map(u64::to_string).collect();
    println!(
        "{{\"connections\":{},\"records_per_request\":{},\"rate_limit\":{},\"latency_from\":\"{}\",\"warmup_s\":{:.1},\"measured_s\":{:.2},\
\"requests_ok\":{},\"events_ok\":{},\"events_queued\":{},\"events_duplicate\":{},\"status_503\":{},\"status_other\":{},\"io_errors\":{},\"first_error\":{},\
\"events_per_s\":{:.0},\"requests_per_s\":{:.0},\
\"latency_ms\":{{\"mean\":{:.3},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}},\
\"events_per_second\":{{\"min\":{},\"median\":{},\"timeline\":[{}]}},\"loadgen_cpu_s\":{}}}",
        o.connections,
        o.records,
        o.rate,
        if o.rate > 0.0 { "schedule" } else { "send" },
        o.warmup.as_secs_f64(),
        window,
        total.requests_ok,
        total.events_ok,
        total.queued,
        total.duplicates,
        total.status_503,
        total.status_other,
        total.io_errors,
        total
            .first_error
            .as_deref()
            .map_or("null".into(), json_string),
        total.events_ok as f64 / window,
        total.requests_ok as f64 / window,
        mean,
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
        percentile(&sorted, 99.9),
        sorted.last().map_or(0.0, |&u| f64::from(u) / 1000.0),
        ps_min,
        ps_median,
        timeline.join(","),
        cpu,
    );
    if total.requests_ok == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
