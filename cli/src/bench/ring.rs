//! `synergy bench ring`: the runtime's bounded MPMC ring (`synergy::bench::Ring`, the RX and wait
//! queues) next to the crates that could replace it, measured side by side in one run:
//! crossbeam-queue's `ArrayQueue` (the same bounded MPMC design) and crossbeam-deque's
//! work-stealing `Worker`/`Stealer` (what an RX queue with stealing peers could be built on).
//! Two patterns: push + pop on one thread (a worker filling and draining its own queue), and a
//! transfer from one thread to another (a stealer taking from the owner). Median of alternating
//! rounds; ns per item.

use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use synergy::bench::Ring;
use synergy_eval::plot::{bar_chart, BarGroup};

const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct RingBench {
    pub cpu_model: String,
    pub items_per_round: u64,
    pub rounds: usize,
    /// (pattern, implementation, median ns per item)
    pub results: Vec<(String, String, f64)>,
}

fn per_item(t0: Instant, n: u64) -> f64 {
    t0.elapsed().as_nanos() as f64 / n as f64
}

fn same_thread_ring(n: u64) -> f64 {
    let r = Ring::with_capacity(CAPACITY);
    let t0 = Instant::now();
    for i in 0..n {
        r.push(i).unwrap();
        std::hint::black_box(r.pop());
    }
    per_item(t0, n)
}

fn same_thread_array_queue(n: u64) -> f64 {
    let q = crossbeam_queue::ArrayQueue::new(CAPACITY);
    let t0 = Instant::now();
    for i in 0..n {
        q.push(i).unwrap();
        std::hint::black_box(q.pop());
    }
    per_item(t0, n)
}

fn same_thread_deque(n: u64) -> f64 {
    let w = crossbeam_deque::Worker::new_fifo();
    let t0 = Instant::now();
    for i in 0..n {
        w.push(i);
        std::hint::black_box(w.pop());
    }
    per_item(t0, n)
}

/// One thread pushes `n` items (retrying when full), another takes them all.
fn transfer<Q: Send + Sync + 'static>(
    q: Arc<Q>,
    n: u64,
    push: fn(&Q, u64) -> bool,
    take: impl Fn(&Q) -> Option<u64> + Send + 'static,
) -> f64 {
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut got = 0;
            while got < n {
                if take(&q).is_some() {
                    got += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let t0 = Instant::now();
    for i in 0..n {
        while !push(&q, i) {
            std::hint::spin_loop();
        }
    }
    consumer.join().unwrap();
    per_item(t0, n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(rounds: usize, items: u64) -> RingBench {
    let mut samples: Vec<(String, String, Vec<f64>)> = Vec::new();
    let mut add = |pattern: &str, imp: &str, v: f64| match samples.iter_mut().find(|(p, i, _)| p == pattern && i == imp)
    {
        Some((_, _, s)) => s.push(v),
        None => samples.push((pattern.into(), imp.into(), vec![v])),
    };
    let mut progress = synergy_eval::progress::task("synergy bench ring", (rounds) as u64, "rounds");
    for _ in 0..rounds {
        add("same thread", "synergy Ring", same_thread_ring(items));
        add("same thread", "crossbeam ArrayQueue", same_thread_array_queue(items));
        add("same thread", "crossbeam-deque Worker", same_thread_deque(items));
        let ring = Arc::new(Ring::with_capacity(CAPACITY));
        add("thread to thread", "synergy Ring", transfer(ring, items, |q, v| q.push(v).is_ok(), |q| q.pop()));
        let aq = Arc::new(crossbeam_queue::ArrayQueue::new(CAPACITY));
        add("thread to thread", "crossbeam ArrayQueue", transfer(aq, items, |q, v| q.push(v).is_ok(), |q| q.pop()));
        // The deque's owner pushes; a stealer takes (its owner handle is not Sync: it stays here).
        let w = crossbeam_deque::Worker::new_fifo();
        let s = Arc::new(w.stealer());
        let consumer = {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                while got < items {
                    if s.steal().success().is_some() {
                        got += 1;
                    } else {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let t0 = Instant::now();
        for i in 0..items {
            // Bounded like the others: wait while the stealer lags by a full ring.
            while w.len() >= CAPACITY {
                std::hint::spin_loop();
            }
            w.push(i);
        }
        consumer.join().unwrap();
        add("thread to thread", "crossbeam-deque Worker", per_item(t0, items));
        progress.inc();
    }
    RingBench {
        cpu_model: synergy::cpu::model_name(),
        items_per_round: items,
        rounds,
        results: samples.into_iter().map(|(p, i, v)| (p, i, median(v))).collect(),
    }
}

pub fn csv(b: &RingBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&["pattern", "implementation", "ns_per_item"]);
    for (p, i, v) in &b.results {
        table.row([p.to_string(), i.to_string(), format!("{v:.2}")]);
    }
    table.finish()
}

pub fn svg(b: &RingBench) -> String {
    let mut groups: Vec<BarGroup> = Vec::new();
    for (p, i, v) in &b.results {
        match groups.iter_mut().find(|g| &g.label == p) {
            Some(g) => g.bars.push((i.clone(), *v)),
            None => groups.push(BarGroup { label: p.clone(), bars: vec![(i.clone(), *v)] }),
        }
    }
    bar_chart(&format!("Bounded queues, ns per item ({})", b.cpu_model), "ns per item (median)", &groups, false)
}
