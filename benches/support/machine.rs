//! The line a bench prints about the machine it ran on.

/// `machine: N cores, CPU model, Linux VERSION, DATE`.
pub fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%F")
        .output()
        .map_or(String::new(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    println!("machine: {cores} cores, {cpu}, Linux {}, {date}", kernel.trim());
}
