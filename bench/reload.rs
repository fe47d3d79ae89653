//! Reload time with many endpoints: `bench_reload [ENDPOINTS]` writes a config with that many
//! endpoints (1,000 by default), loads it, then times `Instance::reload` — what SIGHUP and
//! `POST /reload` run: read the file, parse and validate it, build the snapshot, swap it in.

use std::time::Instant;

use tether::instance::Instance;

fn config(endpoints: usize) -> String {
    let mut y = String::from(
        "listeners: [{ address: \"127.0.0.1:19080\" }]\n\
         cookie_secret: \"reload benchmark secret, thirty-two bytes\"\n\
         pools:\n  - id: bench\n    endpoints:\n",
    );
    for i in 0..endpoints {
        y.push_str(&format!(
            "      - {{ name: e{i}, address: \"127.0.{}.{}:{}\" }}\n",
            i / 250,
            i % 250 + 1,
            10_000 + i
        ));
    }
    y.push_str(
        "load_balancers:\n  - name: \"*\"\n    default_pools: [bench]\n    session_affinity: cookie\n",
    );
    y
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("tether-reload-{}", std::process::id()));
    let path = dir.join("tether.yaml");
    let run = || -> Result<Vec<f64>, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(&path, config(n)).map_err(|e| e.to_string())?;
        let live = Instance::load(&path).map_err(|e| e.to_string())?;
        let mut ms: Vec<f64> = (0..21)
            .map(|_| {
                let t = Instant::now();
                live.reload().map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        ms.sort_by(f64::total_cmp);
        Ok(ms)
    };
    let result = run();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(ms) => println!(
            "config reload with {n} endpoints (read, parse, validate, build, swap): median {:.2} ms, max {:.2} ms over {} reloads",
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            ms.len()
        ),
        Err(e) => {
            eprintln!("reload benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
