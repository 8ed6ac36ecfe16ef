//! Collectors: the machine (from /proc and /sys, unprivileged), the Raspberry Pi's temperatures and throttling,
//! and per-service usage from cgroup v2. Every reader takes the root it reads under, so the tests run them on
//! fixture trees; a file that is missing or unreadable leaves its metrics out and never fails the round.
//!
//! Names and labels follow node_exporter (`node_*`) and cAdvisor (`container_*`), so dashboards and alert rules
//! written for those work unchanged; the Pi's throttling flags are `hearth_pi_throttled{flag}` (now) and
//! `hearth_pi_throttled_occurred{flag}` (since boot).

use std::path::Path;

use super::model::{Labels, Sample};

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<f64> {
    read(p)?.trim().parse().ok()
}

struct Out(Vec<Sample>);

impl Out {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push(Sample { labels: Labels::from_pairs(name, labels), value });
    }
}

/// Entries of a directory, sorted, as (file name, path).
fn entries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// State a collector keeps between rounds: the Pi fallback's "has occurred" flags (sticky since hearth started,
/// when the firmware's own record is not readable).
#[derive(Default)]
pub struct HostState {
    seen_flags: u32,
}

const USER_HZ: f64 = 100.0;

/// The machine: CPU, load, pressure, memory, file systems, disks, network, boot time, frequency, temperatures and
/// the Pi's throttling. `root` is `/` on a real machine.
pub(crate) fn host(root: &Path, state: &mut HostState, now_s: f64) -> Vec<Sample> {
    let mut o = Out(Vec::with_capacity(256));
    let proc_ = root.join("proc");
    let sys = root.join("sys");
    if let Some(stat) = read(&proc_.join("stat")) {
        for line in stat.lines() {
            let mut f = line.split_ascii_whitespace();
            match f.next() {
                Some(cpu) if cpu.starts_with("cpu") && cpu.len() > 3 => {
                    let id = &cpu[3..];
                    let modes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
                    for (mode, v) in modes.iter().zip(f) {
                        if let Ok(v) = v.parse::<f64>() {
                            o.push("node_cpu_seconds_total", &[("cpu", id), ("mode", mode)], v / USER_HZ);
                        }
                    }
                }
                Some("btime") => {
                    if let Some(v) = f.next().and_then(|v| v.parse().ok()) {
                        o.push("node_boot_time_seconds", &[], v);
                    }
                }
                Some("ctxt") => {
                    if let Some(v) = f.next().and_then(|v| v.parse().ok()) {
                        o.push("node_context_switches_total", &[], v);
                    }
                }
                Some("procs_running") => {
                    if let Some(v) = f.next().and_then(|v| v.parse().ok()) {
                        o.push("node_procs_running", &[], v);
                    }
                }
                _ => {}
            }
        }
    }
    o.push("node_time_seconds", &[], now_s);
    if let Some(l) = read(&proc_.join("loadavg")) {
        for (name, v) in ["node_load1", "node_load5", "node_load15"].iter().zip(l.split_ascii_whitespace()) {
            if let Ok(v) = v.parse() {
                o.push(name, &[], v);
            }
        }
    }
    for res in ["cpu", "memory", "io"] {
        if let Some(text) = read(&proc_.join("pressure").join(res)) {
            for line in text.lines() {
                let kind = if line.starts_with("some") { "waiting" } else { "stalled" };
                if res == "cpu" && kind == "stalled" {
                    continue; // node_exporter has no cpu "full"
                }
                if let Some(total) = line.split_ascii_whitespace().find_map(|f| f.strip_prefix("total="))
                    && let Ok(us) = total.parse::<f64>()
                {
                    o.push(&format!("node_pressure_{res}_{kind}_seconds_total"), &[], us / 1e6);
                }
            }
        }
    }
    if let Some(m) = read(&proc_.join("meminfo")) {
        for line in m.lines() {
            let Some((k, rest)) = line.split_once(':') else { continue };
            let mut f = rest.split_ascii_whitespace();
            let Some(Ok(v)) = f.next().map(str::parse::<f64>) else { continue };
            let v = if f.next() == Some("kB") { v * 1024.0 } else { v };
            let k = k.replace('(', "_").replace(')', "");
            o.push(&format!("node_memory_{k}_bytes"), &[], v);
        }
    }
    if let Some(m) = read(&proc_.join("mounts")) {
        for (device, mountpoint, fstype) in real_mounts(&m) {
            let at = root.join(mountpoint.trim_start_matches('/'));
            if let Ok(st) = nix::sys::statvfs::statvfs(&at) {
                let frag = st.fragment_size() as f64;
                let l = [("device", device), ("fstype", fstype), ("mountpoint", mountpoint)];
                o.push("node_filesystem_size_bytes", &l, st.blocks() as f64 * frag);
                o.push("node_filesystem_free_bytes", &l, st.blocks_free() as f64 * frag);
                o.push("node_filesystem_avail_bytes", &l, st.blocks_available() as f64 * frag);
                o.push("node_filesystem_files", &l, st.files() as f64);
                o.push("node_filesystem_files_free", &l, st.files_free() as f64);
                o.push(
                    "node_filesystem_readonly",
                    &l,
                    if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) { 1.0 } else { 0.0 },
                );
            }
        }
    }
    if let Some(d) = read(&proc_.join("diskstats")) {
        for line in d.lines() {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 14 || !is_whole_disk(f[2]) {
                continue;
            }
            let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
            let l = [("device", f[2])];
            o.push("node_disk_reads_completed_total", &l, n(3));
            o.push("node_disk_read_bytes_total", &l, n(5) * 512.0);
            o.push("node_disk_read_time_seconds_total", &l, n(6) / 1000.0);
            o.push("node_disk_writes_completed_total", &l, n(7));
            o.push("node_disk_written_bytes_total", &l, n(9) * 512.0);
            o.push("node_disk_write_time_seconds_total", &l, n(10) / 1000.0);
            o.push("node_disk_io_now", &l, n(11));
            o.push("node_disk_io_time_seconds_total", &l, n(12) / 1000.0);
        }
    }
    if let Some(d) = read(&proc_.join("net/dev")) {
        for line in d.lines().skip(2) {
            let Some((dev, rest)) = line.split_once(':') else { continue };
            let dev = dev.trim();
            if dev == "lo" || dev.starts_with("veth") {
                continue;
            }
            let f: Vec<f64> = rest.split_ascii_whitespace().filter_map(|v| v.parse().ok()).collect();
            if f.len() < 16 {
                continue;
            }
            let l = [("device", dev)];
            for (i, what) in [(0, "bytes"), (1, "packets"), (2, "errs"), (3, "drop")] {
                o.push(&format!("node_network_receive_{what}_total"), &l, f[i]);
                o.push(&format!("node_network_transmit_{what}_total"), &l, f[i + 8]);
            }
        }
    }
    for (name, path) in entries(&sys.join("devices/system/cpu")) {
        if let Some(id) = name.strip_prefix("cpu").filter(|id| id.parse::<u32>().is_ok())
            && let Some(khz) = num(&path.join("cpufreq/scaling_cur_freq"))
        {
            o.push("node_cpu_scaling_frequency_hertz", &[("cpu", id)], khz * 1000.0);
            if let Some(max) = num(&path.join("cpufreq/scaling_max_freq")) {
                o.push("node_cpu_scaling_frequency_max_hertz", &[("cpu", id)], max * 1000.0);
            }
        }
    }
    temperatures(&sys, &mut o);
    pi_throttling(&sys, state, &mut o);
    o.0
}

/// Mounts worth reporting: real file systems, not the kernel's pseudo ones or container layers.
fn real_mounts(text: &str) -> Vec<(&str, &str, &str)> {
    const PSEUDO: &[&str] = &[
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "procfs",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tracefs",
        "ramfs",
        "efivarfs",
        "fuse.portal",
        "nfsd",
        "tmpfs",
    ];
    let mut out: Vec<(&str, &str, &str)> = vec![];
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let (dev, mp, fs) = (f[0], f[1], f[2]);
        let under = |p: &str| mp == p || mp.starts_with(&format!("{p}/"));
        let skip_mp = ["/dev", "/proc", "/sys", "/run/credentials", "/var/lib/docker", "/var/lib/containers", "/snap"]
            .iter()
            .any(|p| under(p));
        if PSEUDO.contains(&fs) || skip_mp {
            continue;
        }
        if !out.iter().any(|(_, m, _)| *m == mp) {
            out.push((dev, mp, fs));
        }
    }
    out
}

/// Whole disks (`sda`, `nvme0n1`, `mmcblk0`, `dm-0`), not partitions, loops or RAM disks.
fn is_whole_disk(name: &str) -> bool {
    if ["loop", "ram", "zram", "fd", "sr"].iter().any(|p| name.starts_with(p)) {
        return false;
    }
    if (name.starts_with("nvme") || name.starts_with("mmcblk")) && name.contains('p') {
        let after = &name[name.rfind('p').unwrap_or(0) + 1..];
        return after.is_empty() || after.parse::<u32>().is_err();
    }
    if ["sd", "vd", "hd", "xvd"].iter().any(|p| name.starts_with(p)) {
        return !name.ends_with(|c: char| c.is_ascii_digit());
    }
    true
}

fn temperatures(sys: &Path, o: &mut Out) {
    for (name, path) in entries(&sys.join("class/thermal")) {
        if let Some(zone) = name.strip_prefix("thermal_zone")
            && let Some(milli) = num(&path.join("temp"))
        {
            let kind = read(&path.join("type")).unwrap_or_default();
            o.push("node_thermal_zone_temp", &[("zone", zone), ("type", kind.trim())], milli / 1000.0);
        }
        if let Some(dev) = name.strip_prefix("cooling_device")
            && let (Some(cur), Some(max)) = (num(&path.join("cur_state")), num(&path.join("max_state")))
        {
            let kind = read(&path.join("type")).unwrap_or_default();
            let l = [("name", dev), ("type", kind.trim())];
            o.push("node_cooling_device_cur_state", &l, cur);
            o.push("node_cooling_device_max_state", &l, max);
        }
    }
    for (_, path) in entries(&sys.join("class/hwmon")) {
        let chip = read(&path.join("name")).unwrap_or_default();
        for (file, fpath) in entries(&path) {
            if let Some(sensor) = file.strip_prefix("temp").and_then(|s| s.strip_suffix("_input"))
                && let Some(milli) = num(&fpath)
            {
                let label = read(&path.join(format!("temp{sensor}_label"))).unwrap_or_default();
                let sensor = format!("temp{sensor}");
                o.push(
                    "node_hwmon_temp_celsius",
                    &[("chip", chip.trim()), ("sensor", &sensor), ("label", label.trim())],
                    milli / 1000.0,
                );
            }
        }
    }
}

/// The Pi firmware's flags (`get_throttled`): bit 0 under-voltage, 1 ARM frequency capped, 2 throttled, 3 soft
/// temperature limit; bits 16–19 the same since boot.
const FLAGS: [&str; 4] = ["under_voltage", "freq_capped", "throttled", "soft_temp_limit"];

fn pi_throttling(sys: &Path, state: &mut HostState, o: &mut Out) {
    let firmware = ["devices/platform/soc/soc:firmware/get_throttled", "devices/platform/soc:firmware/get_throttled"]
        .iter()
        .find_map(|p| read(&sys.join(p)))
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok());
    let (now, occurred) = match firmware {
        Some(bits) => (bits & 0xf, (bits >> 16) & 0xf),
        None => {
            // Debian's kernel: the rpi_volt hwmon's under-voltage alarm, and the CPU's cooling state
            let mut found = false;
            let mut now = 0u32;
            for (_, path) in entries(&sys.join("class/hwmon")) {
                if read(&path.join("name")).is_some_and(|n| n.trim() == "rpi_volt")
                    && let Some(alarm) = num(&path.join("in0_lcrit_alarm"))
                {
                    found = true;
                    if alarm > 0.0 {
                        now |= 1;
                    }
                }
            }
            for (name, path) in entries(&sys.join("class/thermal")) {
                if name.starts_with("cooling_device")
                    && read(&path.join("type")).is_some_and(|t| t.contains("cpufreq") || t.trim() == "cpu")
                    && let Some(cur) = num(&path.join("cur_state"))
                {
                    found = true;
                    if cur > 0.0 {
                        now |= 1 << 2;
                    }
                }
            }
            if !found {
                return;
            }
            state.seen_flags |= now;
            (now, state.seen_flags)
        }
    };
    for (i, flag) in FLAGS.iter().enumerate() {
        o.push("hearth_pi_throttled", &[("flag", flag)], f64::from((now >> i) & 1));
        o.push("hearth_pi_throttled_occurred", &[("flag", flag)], f64::from((occurred >> i) & 1));
    }
}

/// A cgroup v2 group worth reporting: a systemd service or a container.
struct Group<'a> {
    id: String,
    name: String,
    kind: &'a str,
    path: std::path::PathBuf,
}

/// Per systemd unit and per container usage from cgroup v2 (`cgroup` is `/sys/fs/cgroup`). `names` maps a
/// container id to its name (from the Docker API when readable); otherwise the short id is the name.
pub(crate) fn services(cgroup: &Path, names: &dyn Fn(&str) -> Option<String>) -> Vec<Sample> {
    let mut groups: Vec<Group<'_>> = vec![];
    for (entry, path) in entries(&cgroup.join("system.slice")) {
        if let Some(id) = entry.strip_prefix("docker-").and_then(|s| s.strip_suffix(".scope")) {
            let name = names(id).unwrap_or_else(|| id.chars().take(12).collect());
            groups.push(Group { id: format!("/system.slice/{entry}"), name, kind: "docker", path });
        } else if entry.ends_with(".service") && path.is_dir() {
            groups.push(Group { id: format!("/system.slice/{entry}"), name: entry.clone(), kind: "systemd", path });
        }
    }
    // the cgroupfs driver: /docker/<id>
    for (entry, path) in entries(&cgroup.join("docker")) {
        if path.is_dir() && entry.len() >= 12 && entry.chars().all(|c| c.is_ascii_hexdigit()) {
            let name = names(&entry).unwrap_or_else(|| entry.chars().take(12).collect());
            groups.push(Group { id: format!("/docker/{entry}"), name, kind: "docker", path });
        }
    }
    let mut o = Out(Vec::with_capacity(groups.len() * 10));
    for g in &groups {
        let l = [("id", g.id.as_str()), ("name", g.name.as_str()), ("kind", g.kind)];
        if let Some(cpu) = read(&g.path.join("cpu.stat")) {
            for line in cpu.lines() {
                let Some((k, v)) = line.split_once(' ') else { continue };
                let Ok(us) = v.trim().parse::<f64>() else { continue };
                let name = match k {
                    "usage_usec" => "container_cpu_usage_seconds_total",
                    "user_usec" => "container_cpu_user_seconds_total",
                    "system_usec" => "container_cpu_system_seconds_total",
                    "throttled_usec" => "container_cpu_cfs_throttled_seconds_total",
                    _ => continue,
                };
                o.push(name, &l, us / 1e6);
            }
        }
        let current = num(&g.path.join("memory.current"));
        if let Some(cur) = current {
            o.push("container_memory_usage_bytes", &l, cur);
        }
        if let Some(stat) = read(&g.path.join("memory.stat")) {
            let field = |key: &str| {
                stat.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            };
            if let Some(anon) = field("anon") {
                o.push("container_memory_rss", &l, anon);
            }
            if let Some(file) = field("file") {
                o.push("container_memory_cache", &l, file);
            }
            if let (Some(cur), Some(inactive)) = (current, field("inactive_file")) {
                o.push("container_memory_working_set_bytes", &l, (cur - inactive).max(0.0));
            }
        }
        if let Some(io) = read(&g.path.join("io.stat")) {
            let mut sums = [0.0f64; 4];
            for line in io.lines() {
                for f in line.split_ascii_whitespace().skip(1) {
                    let Some((k, v)) = f.split_once('=') else { continue };
                    let i = match k {
                        "rbytes" => 0,
                        "wbytes" => 1,
                        "rios" => 2,
                        "wios" => 3,
                        _ => continue,
                    };
                    sums[i] += v.parse::<f64>().unwrap_or(0.0);
                }
            }
            o.push("container_fs_reads_bytes_total", &l, sums[0]);
            o.push("container_fs_writes_bytes_total", &l, sums[1]);
            o.push("container_fs_reads_total", &l, sums[2]);
            o.push("container_fs_writes_total", &l, sums[3]);
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn value(v: &[Sample], key: &str) -> Option<f64> {
        v.iter().find(|s| s.labels.key() == key).map(|s| s.value)
    }

    fn host_fixture(root: &Path) {
        put(
            root,
            "proc/stat",
            "cpu  100 0 50 1000 5 0 1 0 0 0\ncpu0 60 0 30 500 3 0 1 0 0 0\ncpu1 40 0 20 500 2 0 0 0 0 0\nctxt 999\nbtime 1700000000\nprocs_running 3\n",
        );
        put(root, "proc/loadavg", "0.52 0.40 0.31 2/345 6789\n");
        put(
            root,
            "proc/pressure/cpu",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        put(
            root,
            "proc/pressure/io",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
        );
        put(
            root,
            "proc/meminfo",
            "MemTotal:        3884328 kB\nMemAvailable:    2000000 kB\nCached:           500000 kB\nSwapFree:              0 kB\nActive(anon):      1000 kB\nHugePages_Total:       0\n",
        );
        put(
            root,
            "proc/mounts",
            "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/mmcblk0p1 /boot/firmware vfat rw 0 0\noverlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n",
        );
        fs::create_dir_all(root.join("boot/firmware")).unwrap();
        put(
            root,
            "proc/diskstats",
            " 179       0 mmcblk0 4000 10 80000 1200 3000 20 60000 2400 0 3000 3600 0 0 0 0\n 179       1 mmcblk0p1 10 0 100 5 0 0 0 0 0 5 5 0 0 0 0\n   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0\n   8       0 sda 1 0 8 1 1 0 8 1 0 2 2 0 0 0 0\n   8       1 sda1 1 0 8 1 1 0 8 1 0 2 2 0 0 0 0\n",
        );
        put(
            root,
            "proc/net/dev",
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 123456 1000 2 3 0 0 0 0 654321 900 4 5 0 0 0 0\nveth12: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n",
        );
        put(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1500000\n");
        put(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "1800000\n");
        put(root, "sys/class/thermal/thermal_zone0/temp", "51540\n");
        put(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        put(root, "sys/class/hwmon/hwmon1/name", "nvme\n");
        put(root, "sys/class/hwmon/hwmon1/temp1_input", "44850\n");
        put(root, "sys/class/hwmon/hwmon1/temp1_label", "Composite\n");
    }

    #[test]
    fn host_metrics_from_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        host_fixture(dir.path());
        let v = host(dir.path(), &mut HostState::default(), 1.7e9);
        assert_eq!(value(&v, r#"node_cpu_seconds_total{cpu="0",mode="user"}"#), Some(0.6));
        assert_eq!(value(&v, r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#), Some(5.0));
        assert_eq!(value(&v, r#"node_cpu_seconds_total{cpu="",mode="user"}"#), None, "the total line is not a core");
        assert_eq!(value(&v, "node_boot_time_seconds{}"), Some(1.7e9));
        assert_eq!(value(&v, "node_load5{}"), Some(0.40));
        assert_eq!(value(&v, "node_pressure_cpu_waiting_seconds_total{}"), Some(1.5));
        assert_eq!(value(&v, "node_pressure_io_stalled_seconds_total{}"), Some(1.0));
        assert_eq!(value(&v, "node_memory_MemAvailable_bytes{}"), Some(2_048_000_000.0));
        assert_eq!(value(&v, "node_memory_Active_anon_bytes{}"), Some(1_024_000.0));
        assert_eq!(value(&v, "node_memory_HugePages_Total_bytes{}"), Some(0.0));
        let mounts: Vec<&str> = v
            .iter()
            .filter(|s| s.labels.name() == "node_filesystem_size_bytes")
            .map(|s| s.labels.get("mountpoint").unwrap())
            .collect();
        assert_eq!(mounts, ["/", "/boot/firmware"]);
        assert!(
            value(&v, r#"node_filesystem_avail_bytes{device="/dev/mmcblk0p2",fstype="ext4",mountpoint="/"}"#).unwrap()
                > 0.0
        );
        assert_eq!(value(&v, r#"node_disk_read_bytes_total{device="mmcblk0"}"#), Some(80000.0 * 512.0));
        assert_eq!(value(&v, r#"node_disk_io_time_seconds_total{device="mmcblk0"}"#), Some(3.0));
        assert!(value(&v, r#"node_disk_reads_completed_total{device="sda"}"#).is_some());
        for gone in ["mmcblk0p1", "loop0", "sda1"] {
            assert!(!v.iter().any(|s| s.labels.get("device") == Some(gone)), "{gone}");
        }
        assert_eq!(value(&v, r#"node_network_receive_bytes_total{device="eth0"}"#), Some(123456.0));
        assert_eq!(value(&v, r#"node_network_transmit_drop_total{device="eth0"}"#), Some(5.0));
        assert!(!v.iter().any(|s| matches!(s.labels.get("device"), Some("lo" | "veth12"))));
        assert_eq!(value(&v, r#"node_cpu_scaling_frequency_hertz{cpu="0"}"#), Some(1.5e9));
        assert_eq!(value(&v, r#"node_thermal_zone_temp{type="cpu-thermal",zone="0"}"#), Some(51.54));
        assert_eq!(value(&v, r#"node_hwmon_temp_celsius{chip="nvme",label="Composite",sensor="temp1"}"#), Some(44.85));
        assert!(!v.iter().any(|s| s.labels.name().starts_with("hearth_pi")), "not a Pi: no throttling series");
    }

    #[test]
    fn pi_throttling_from_the_firmware() {
        let dir = tempfile::tempdir().unwrap();
        // under-voltage now; throttled and under-voltage have occurred
        put(dir.path(), "sys/devices/platform/soc/soc:firmware/get_throttled", "50001\n");
        let v = host(dir.path(), &mut HostState::default(), 0.0);
        assert_eq!(value(&v, r#"hearth_pi_throttled{flag="under_voltage"}"#), Some(1.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled{flag="throttled"}"#), Some(0.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled_occurred{flag="throttled"}"#), Some(1.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled_occurred{flag="under_voltage"}"#), Some(1.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled_occurred{flag="freq_capped"}"#), Some(0.0));
    }

    #[test]
    fn pi_throttling_from_debians_kernel_is_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "sys/class/hwmon/hwmon0/name", "rpi_volt\n");
        put(r, "sys/class/hwmon/hwmon0/in0_lcrit_alarm", "1\n");
        put(r, "sys/class/thermal/cooling_device0/type", "cpufreq-cpu0\n");
        put(r, "sys/class/thermal/cooling_device0/cur_state", "2\n");
        put(r, "sys/class/thermal/cooling_device0/max_state", "4\n");
        let mut st = HostState::default();
        let v = host(r, &mut st, 0.0);
        assert_eq!(value(&v, r#"hearth_pi_throttled{flag="under_voltage"}"#), Some(1.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled{flag="throttled"}"#), Some(1.0));
        assert_eq!(value(&v, r#"node_cooling_device_cur_state{name="0",type="cpufreq-cpu0"}"#), Some(2.0));
        put(r, "sys/class/hwmon/hwmon0/in0_lcrit_alarm", "0\n");
        put(r, "sys/class/thermal/cooling_device0/cur_state", "0\n");
        let v = host(r, &mut st, 0.0);
        assert_eq!(value(&v, r#"hearth_pi_throttled{flag="under_voltage"}"#), Some(0.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled_occurred{flag="under_voltage"}"#), Some(1.0));
        assert_eq!(value(&v, r#"hearth_pi_throttled_occurred{flag="throttled"}"#), Some(1.0));
    }

    #[test]
    fn services_from_a_cgroup_tree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(
            r,
            "system.slice/nginx.service/cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\nthrottled_usec 0\n",
        );
        put(r, "system.slice/nginx.service/memory.current", "10485760\n");
        put(r, "system.slice/nginx.service/memory.stat", "anon 4194304\nfile 6291456\ninactive_file 2097152\n");
        put(
            r,
            "system.slice/nginx.service/io.stat",
            "179:0 rbytes=1000 wbytes=2000 rios=10 wios=20 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=1 wios=2\n",
        );
        let id = "0123456789abcdef0123456789abcdef";
        put(r, &format!("system.slice/docker-{id}.scope/cpu.stat"), "usage_usec 1000000\n");
        put(r, &format!("docker/{id}ff/memory.current"), "4096\n");
        put(r, "system.slice/not-a-dir.service", "");
        let names = |cid: &str| (cid == id).then(|| "pihole".to_string());
        let v = services(r, &names);
        let svc = r#"{id="/system.slice/nginx.service",kind="systemd",name="nginx.service"}"#;
        assert_eq!(value(&v, &format!("container_cpu_usage_seconds_total{svc}")), Some(2.5));
        assert_eq!(value(&v, &format!("container_memory_usage_bytes{svc}")), Some(10485760.0));
        assert_eq!(value(&v, &format!("container_memory_working_set_bytes{svc}")), Some(8388608.0));
        assert_eq!(value(&v, &format!("container_fs_writes_bytes_total{svc}")), Some(2002.0));
        assert_eq!(
            value(
                &v,
                &format!(
                    r#"container_cpu_usage_seconds_total{{id="/system.slice/docker-{id}.scope",kind="docker",name="pihole"}}"#
                )
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &v,
                &format!(r#"container_memory_usage_bytes{{id="/docker/{id}ff",kind="docker",name="0123456789ab"}}"#)
            ),
            Some(4096.0)
        );
        assert!(!v.iter().any(|s| s.labels.get("name") == Some("not-a-dir.service")));
    }
}
