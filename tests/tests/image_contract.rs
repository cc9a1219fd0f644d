//! The image contract, checked without Docker and without a Nix build.
//!
//! `nix/images.json` is the one description of the OCI images: the flake builds them from it and
//! these tests lay out each image's root filesystem from it exactly as described (the static musl
//! binary, Debian's CA bundle, passwd/group, nothing else) and run its entrypoint with `bwrap`
//! as the image's user, with every namespace unshared and the environment the image config sets.
//! A binary that needed a shell, a dynamic loader, a library or a file the image lacks fails
//! here. `nix-instantiate --eval` of `nix/image-config.nix` checks that the OCI config and the
//! passwd/group the flake writes are the ones run here.
//!
//! One switch runs the same tests against the images Nix built, with Docker (the CI's Nix
//! job): `NTON_IMAGE_RUNNER=docker`, `NTON_IMAGE_ARCHIVES=<dir>` holding the `docker-archive`
//! tarballs (`nix build .#images`: `<name>.tar.gz`) and `NTON_LAMBDA_RIE=<path>` to the AWS
//! Lambda Runtime Interface Emulator binary. Then each image is `docker load`ed and run with
//! `docker run` as its config says (user 1000, its Env, its entrypoint), and each Lambda image
//! answers its event through the RIE instead of this file's runtime API.
//!
//! The binaries are built with `cargo build --release --target x86_64-unknown-linux-musl`
//! (minutes the first time), or taken from `$NTON_MUSL_BIN_DIR` when set. Needs `bwrap`
//! (Debian `bubblewrap`), `nix-instantiate` (Debian `nix-bin`), `musl-gcc` (Debian
//! `musl-tools`) and `/etc/ssl/certs/ca-certificates.crt` (Debian `ca-certificates`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nton_core::stage::{
    DataPoint, FIRST_TIMESTAMP_MS, OPEN_ABOVE, POINTS, ResultPoint, STEP_MS, VALUE_MAX, VALUE_MIN,
};
use nton_tests::workspace_root;
use serde::Deserialize;
use uuid::Uuid;

/// The musl target the images are built for on x86_64 (the flake adds aarch64).
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Debian's CA bundle (package ca-certificates), standing in for nixpkgs' cacert.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// An image may weigh at most this much more than its binary.
const MAX_IMAGE_TO_BINARY: f64 = 1.3;
/// Compressed (gzip) image size ceiling, bytes.
const MAX_COMPRESSED_IMAGE: u64 = 10_000_000;
/// Longest a single run of an entrypoint may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What runs the images.
enum Runner {
    /// bwrap over a root filesystem laid out from the description (the default).
    Bwrap,
    /// `docker run` of the built images: their archives' directory, and the RIE binary.
    Docker { archives: PathBuf, rie: PathBuf },
}

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        match std::env::var("NTON_IMAGE_RUNNER").as_deref() {
            Err(_) | Ok("") | Ok("bwrap") => Runner::Bwrap,
            Ok("docker") => Runner::Docker {
                archives: PathBuf::from(var("NTON_IMAGE_ARCHIVES").expect(
                    "NTON_IMAGE_RUNNER=docker needs NTON_IMAGE_ARCHIVES (the nix build .#images result)",
                )),
                rie: PathBuf::from(var("NTON_LAMBDA_RIE").expect(
                    "NTON_IMAGE_RUNNER=docker needs NTON_LAMBDA_RIE (the aws-lambda-rie binary)",
                )),
            },
            Ok(other) => panic!("NTON_IMAGE_RUNNER={other:?}: expected bwrap or docker"),
        }
    })
}

/// The image's root for bwrap; none for Docker, which runs the built image itself.
fn image_root(image: &Image) -> Option<Rootfs> {
    match runner() {
        Runner::Bwrap => Some(Rootfs::lay_out(image)),
        Runner::Docker { .. } => None,
    }
}

/// A directory bound into an image: under Docker the image's user (1000) is not the host's,
/// so the directory is writable by all, as an EFS access point's root is for its user.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if matches!(runner(), Runner::Docker { .. }) {
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    }
    dir
}

/// `docker load` of an image's archive, once per image; its reference (`name:tag`).
fn docker_image(image: &Image, archives: &Path) -> String {
    static LOADED: OnceLock<std::sync::Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap();
    let name = image.package.clone();
    loaded
        .entry(name.clone())
        .or_insert_with(|| {
            let archive = archives.join(format!("{name}.tar.gz"));
            let output = Command::new("docker")
                .arg("load")
                .arg("--input")
                .arg(&archive)
                .output()
                .expect("docker runs");
            assert!(
                output.status.success(),
                "docker load {}: {}",
                archive.display(),
                describe(&output)
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("Loaded image: "))
                .unwrap_or_else(|| panic!("docker load printed no image name: {stdout}"))
                .trim()
                .to_string()
        })
        .clone()
}

// ---------------------------------------------------------------------------------------------
// The description (nix/images.json)

#[derive(Debug, Deserialize)]
struct Spec {
    images: BTreeMap<String, Image>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Image {
    flake_output: String,
    package: String,
    description: String,
    entrypoint: Vec<String>,
    user: User,
    env: BTreeMap<String, String>,
    files: BTreeMap<String, FileKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FileKind {
    Binary,
    CaBundle,
    Passwd,
    Group,
}

impl Image {
    fn paths_of(&self, kind: FileKind) -> Vec<&str> {
        self.files.iter().filter(|(_, k)| **k == kind).map(|(path, _)| path.as_str()).collect()
    }

    fn binary_path(&self) -> &str {
        self.paths_of(FileKind::Binary)[0]
    }

    /// The passwd line of the image's user. nix/image-config.nix writes the same text; the
    /// `nix_config_is_the_description` test compares them.
    fn passwd(&self) -> String {
        let u = &self.user;
        format!("{}:x:{}:{}:{}:{}:/sbin/nologin\n", u.name, u.uid, u.gid, u.name, u.home)
    }

    fn group(&self) -> String {
        format!("{}:x:{}:\n", self.user.name, self.user.gid)
    }

    /// Whether the image is a Lambda function's (its binary runs the Lambda runtime loop).
    fn is_lambda(&self) -> bool {
        self.package != "nton-job"
    }
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = workspace_root().join("nix/images.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

fn image(name: &str) -> &'static Image {
    spec().images.get(name).unwrap_or_else(|| panic!("nix/images.json has no image {name}"))
}

// ---------------------------------------------------------------------------------------------
// The binaries

/// The directory holding the static release binaries: `$NTON_MUSL_BIN_DIR`, or cargo's output
/// after building them (once per test process; cargo makes later builds a no-op).
fn musl_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("NTON_MUSL_BIN_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut build = Command::new(&cargo);
        build.current_dir(workspace_root()).args(["build", "--release", "--target", MUSL_TARGET]);
        for image in spec().images.values() {
            build.args(["-p", &image.package]);
        }
        let status = build.status().unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(
            status.success(),
            "building the static binaries failed ({status}); they need the {MUSL_TARGET} target \
             (rustup target add {MUSL_TARGET}) and musl-gcc (Debian musl-tools)"
        );
        target_directory().join(MUSL_TARGET).join("release")
    })
}

/// Cargo's target directory, wherever CARGO_TARGET_DIR or a config file puts it.
fn target_directory() -> PathBuf {
    #[derive(Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Metadata>(&output.stdout)
        .expect("cargo metadata prints JSON")
        .target_directory
}

fn binary_of(image: &Image) -> PathBuf {
    let path = musl_bin_dir().join(&image.package);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

// ---------------------------------------------------------------------------------------------
// Root filesystems

/// An image's root filesystem, laid out from its description alone.
struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn lay_out(image: &Image) -> Rootfs {
        let dir = tempfile::Builder::new().prefix("nton-image-root.").tempdir().expect("temp dir");
        for (path, kind) in &image.files {
            let dest = dir.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().expect("a file path has a parent")).unwrap();
            let mode = match kind {
                FileKind::Binary => {
                    fs::copy(binary_of(image), &dest).unwrap();
                    0o555
                }
                FileKind::CaBundle => {
                    let bundle = Path::new(HOST_CA_BUNDLE);
                    assert!(
                        bundle.is_file(),
                        "{HOST_CA_BUNDLE} is missing: install Debian's ca-certificates"
                    );
                    fs::copy(bundle, &dest).unwrap();
                    0o444
                }
                FileKind::Passwd => {
                    fs::write(&dest, image.passwd()).unwrap();
                    0o444
                }
                FileKind::Group => {
                    fs::write(&dest, image.group()).unwrap();
                    0o444
                }
            };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).unwrap();
        }
        let rootfs = Rootfs { dir };
        rootfs.assert_exactly(image);
        rootfs
    }

    /// Every entry under the root, relative, with a trailing `/` on directories.
    fn entries(&self) -> BTreeSet<String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    out.insert(format!("/{rel}/"));
                    walk(base, &path, out);
                } else {
                    out.insert(format!("/{rel}"));
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.path(), self.path(), &mut out);
        out
    }

    /// The root holds the described files and the directories leading to them, nothing else.
    fn assert_exactly(&self, image: &Image) {
        let mut expected = BTreeSet::new();
        for path in image.files.keys() {
            expected.insert(path.clone());
            let mut parent = Path::new(path).parent();
            while let Some(dir) = parent.filter(|d| *d != Path::new("/")) {
                expected.insert(format!("{}/", dir.display()));
                parent = dir.parent();
            }
        }
        assert_eq!(self.entries(), expected, "root filesystem of {}", image.package);
    }

    /// Bytes of all files (what the image's layers carry, before compression).
    fn size(&self) -> u64 {
        self.entries()
            .iter()
            .filter(|e| !e.ends_with('/'))
            .map(|e| fs::metadata(self.path().join(&e[1..])).unwrap().len())
            .sum()
    }

    /// Size of the root as a gzip-compressed tar: what a registry stores and a host pulls.
    fn compressed_size(&self) -> u64 {
        let counter = CountingWriter::default();
        let gzip = flate2::write::GzEncoder::new(counter, flate2::Compression::default());
        let mut tar = tar::Builder::new(gzip);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", self.path()).unwrap();
        let gzip = tar.into_inner().unwrap();
        gzip.finish().unwrap().bytes
    }
}

#[derive(Default)]
struct CountingWriter {
    bytes: u64,
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Running an entrypoint inside its root filesystem

/// One run of an image's entrypoint.
struct Run<'a> {
    image: &'a Image,
    /// bwrap's root; `None` under Docker.
    root: Option<&'a Rootfs>,
    /// Keep the host's network (for a runtime API on the host's loopback).
    share_net: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// host directory -> path inside the image
    binds: Vec<(PathBuf, String)>,
}

impl<'a> Run<'a> {
    fn new(image: &'a Image, root: Option<&'a Rootfs>) -> Run<'a> {
        Run { image, root, share_net: false, args: Vec::new(), env: Vec::new(), binds: Vec::new() }
    }

    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    fn bind(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push((host.to_path_buf(), inside.to_string()));
        self
    }

    /// Runs the entrypoint with bwrap: the root filesystem bound at `/` (then made read-only,
    /// as Lambda's is), fresh /dev and /proc, the binds, every namespace unshared (no network
    /// but a loopback), the image's user, and an environment of the image config's `Env` plus
    /// this run's variables and nothing from the host.
    fn output(self) -> Output {
        run_with_timeout(self.command(), RUN_TIMEOUT)
    }

    /// The command that runs the entrypoint: bwrap (above), or under Docker `docker run` of
    /// the loaded image with the same binds, variables and arguments, no network and a
    /// read-only root, as the image config's user.
    fn command(self) -> Command {
        let Runner::Docker { archives, .. } = runner() else {
            return self.bwrap_command();
        };
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none"]);
        for (host, inside) in &self.binds {
            cmd.arg("--volume").arg(format!("{}:{inside}", host.display()));
        }
        for (name, value) in &self.env {
            cmd.arg("--env").arg(format!("{name}={value}"));
        }
        cmd.arg(docker_image(self.image, archives));
        cmd.args(&self.args);
        cmd
    }

    fn bwrap_command(self) -> Command {
        let root = self.root.expect("bwrap runs a laid-out root");
        let bwrap = which("bwrap").unwrap_or_else(|| {
            panic!(
                "bwrap is not installed: apt-get install bubblewrap (the image contract needs it)"
            )
        });
        let mut cmd = Command::new(bwrap);
        cmd.env_clear();
        cmd.arg("--bind").arg(root.path()).arg("/");
        cmd.args(["--dev", "/dev", "--proc", "/proc"]);
        for (host, inside) in &self.binds {
            cmd.arg("--bind").arg(host).arg(inside);
        }
        cmd.args(["--remount-ro", "/"]);
        cmd.args(["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]);
        if self.share_net {
            cmd.arg("--share-net");
        }
        cmd.args(["--uid", &self.image.user.uid.to_string()]);
        cmd.args(["--gid", &self.image.user.gid.to_string()]);
        cmd.args(["--chdir", "/"]);
        for (name, value) in self.image.env.iter().chain(self.env.iter().map(|(n, v)| (n, v))) {
            cmd.args(["--setenv", name, value]);
        }
        cmd.arg("--");
        cmd.args(&self.image.entrypoint);
        cmd.args(&self.args);
        cmd
    }
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bwrap starts");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap().unwrap(), stderr: err.join().unwrap().unwrap() }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|path| path.is_file())
}

fn describe(output: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// ELF: a static binary has no program interpreter and needs no shared library

#[derive(Debug, PartialEq, Eq)]
struct ElfFacts {
    machine: u16,
    interpreter: bool,
    needed: usize,
}

/// Reads the ELF header, the program headers and the dynamic section of a 64-bit
/// little-endian ELF file: whether it asks for a program interpreter (PT_INTERP, i.e. a
/// dynamic loader such as ld-linux or ld-musl) and how many shared libraries it needs
/// (DT_NEEDED). A static-pie binary has a PT_DYNAMIC for its own relocations but no
/// PT_INTERP and no DT_NEEDED.
fn elf_facts(bytes: &[u8]) -> ElfFacts {
    assert!(bytes.len() > 64 && &bytes[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let machine = u16_at(18);
    let phoff = u64_at(32) as usize;
    let phentsize = u16_at(54) as usize;
    let phnum = u16_at(56) as usize;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    let mut interpreter = false;
    let mut needed = 0;
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        let kind = u32::from_le_bytes(bytes[header..header + 4].try_into().unwrap());
        let offset = u64_at(header + 8) as usize;
        let filesz = u64_at(header + 32) as usize;
        match kind {
            PT_INTERP => interpreter = true,
            PT_DYNAMIC => {
                for entry in bytes[offset..offset + filesz].chunks_exact(16) {
                    let tag = u64::from_le_bytes(entry[..8].try_into().unwrap());
                    if tag == DT_NULL {
                        break;
                    }
                    if tag == DT_NEEDED {
                        needed += 1;
                    }
                }
            }
            _ => {}
        }
    }
    ElfFacts { machine, interpreter, needed }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The description is coherent, the flake reads it, and the images are the ones the template
/// deploys.
#[test]
fn the_description_is_coherent_and_shared() {
    let spec = spec();
    let names: Vec<&str> = spec.images.keys().map(String::as_str).collect();
    assert_eq!(names, ["nton-init", "nton-job", "nton-watch"]);

    let flake = fs::read_to_string(workspace_root().join("flake.nix")).unwrap();
    assert!(
        flake.contains("builtins.fromJSON (builtins.readFile ./nix/images.json)"),
        "flake.nix must build the images from nix/images.json"
    );
    let template =
        fs::read_to_string(workspace_root().join("cloudformation/pipeline.yaml")).unwrap();

    for (name, image) in &spec.images {
        assert_eq!(image.paths_of(FileKind::Binary).len(), 1, "{name}: one binary");
        assert_eq!(image.paths_of(FileKind::CaBundle).len(), 1, "{name}: one CA bundle");
        assert_eq!(image.paths_of(FileKind::Passwd), ["/etc/passwd"], "{name}");
        assert_eq!(image.paths_of(FileKind::Group), ["/etc/group"], "{name}");
        assert_eq!(image.entrypoint, [image.binary_path()], "{name}: the binary is the entrypoint");
        assert_eq!(
            image.env.get("SSL_CERT_FILE").map(String::as_str),
            Some(image.paths_of(FileKind::CaBundle)[0]),
            "{name}: SSL_CERT_FILE names the CA bundle"
        );
        assert!(image.user.uid != 0 && image.user.gid != 0, "{name}: not root");
        assert!(!image.description.is_empty() && image.flake_output.starts_with("image-"));
        assert!(
            workspace_root().join("crates").join(&image.package).join("src/main.rs").is_file(),
            "{name}: package {} is a binary crate of the workspace",
            image.package
        );
        // The template builds each image URI as <registry>/<prefix>/<name><tag>.
        assert!(
            template.contains(&format!("/{name}")),
            "{name}: cloudformation/pipeline.yaml deploys an image of this name"
        );
    }
}

/// The job image's user is the user Batch runs every job definition as and the EFS access point
/// writes as, so files on EFS, the image's passwd and the running process agree. (Lambda runs
/// images as a user of its own; the access point sets the identity on EFS for it too.)
#[test]
fn the_image_user_is_the_templates_user() {
    let path = workspace_root().join("cloudformation/pipeline.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let template = nton_engine::template::parse_document(&text).unwrap_or_else(|e| panic!("{e}"));
    let user = &image("nton-job").user;
    let expected = format!("{}:{}", user.uid, user.gid);
    let resources = template["Resources"].as_object().expect("Resources");
    let of_type = |kind: &str| {
        resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .map(|(name, r)| (name.clone(), r.clone()))
            .collect::<Vec<_>>()
    };

    let jobs = of_type("AWS::Batch::JobDefinition");
    assert!(!jobs.is_empty(), "pipeline.yaml has job definitions");
    for (name, job) in &jobs {
        assert_eq!(
            job["Properties"]["ContainerProperties"]["User"].as_str(),
            Some(expected.as_str()),
            "{name}: ContainerProperties.User is the nton-job image's user"
        );
    }
    let access_points = of_type("AWS::EFS::AccessPoint");
    assert!(!access_points.is_empty(), "pipeline.yaml has an EFS access point");
    for (name, point) in &access_points {
        let posix = &point["Properties"]["PosixUser"];
        assert_eq!(posix["Uid"].as_u64(), Some(u64::from(user.uid)), "{name}: PosixUser.Uid");
        assert_eq!(posix["Gid"].as_u64(), Some(u64::from(user.gid)), "{name}: PosixUser.Gid");
    }
}

/// `nix/image-config.nix`, which the flake feeds to dockerTools, evaluates (with a real Nix,
/// offline) to the entrypoint, user, environment and passwd/group these tests run with.
#[test]
fn nix_config_is_the_description() {
    let nix = which("nix-instantiate").unwrap_or_else(|| {
        panic!(
            "nix-instantiate is not installed: apt-get install nix-bin (evaluation only, no builds)"
        )
    });
    // The same call as flake.nix makes, with a known revision.
    let expr = r#"
      let
        workspace = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package;
      in
      import ./nix/image-config.nix {
        spec = builtins.fromJSON (builtins.readFile ./nix/images.json);
        rev = "contract-test-rev";
        inherit (workspace) version license;
        source = workspace.repository;
      }
    "#;
    // `--store dummy://`: the evaluation copies nothing to a store, and without it Debian's
    // nix-instantiate needs the daemon's socket, which only root may reach (GitHub's runners
    // run as a user with sudo).
    let output = Command::new(nix)
        .current_dir(workspace_root())
        .args(["--store", "dummy://"])
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let evaluated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    for (name, image) in &spec().images {
        let nix_image = &evaluated[name.as_str()];
        let config = &nix_image["config"];
        let expected_env: Vec<String> = image.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(config["Entrypoint"], serde_json::json!(image.entrypoint), "{name}");
        assert_eq!(
            config["User"],
            serde_json::json!(format!("{}:{}", image.user.uid, image.user.gid)),
            "{name}"
        );
        assert_eq!(config["Env"], serde_json::json!(expected_env), "{name}");
        assert_eq!(config["WorkingDir"], "/", "{name}");
        let labels = &config["Labels"];
        assert_eq!(labels["org.opencontainers.image.revision"], "contract-test-rev", "{name}");
        assert_eq!(labels["org.opencontainers.image.title"], name.as_str(), "{name}");
        assert_eq!(nix_image["passwd"], serde_json::json!(image.passwd()), "{name}");
        assert_eq!(nix_image["group"], serde_json::json!(image.group()), "{name}");
        assert_eq!(nix_image["binaryPath"], image.binary_path(), "{name}");
        assert_eq!(nix_image["package"], image.package.as_str(), "{name}");
    }
}

/// flake.lock is a lock of flake.nix as it is: Nix itself (offline, in an empty temporary store,
/// nothing fetched) accepts it without updating it, and it pins every input by rev and narHash,
/// with rust-overlay's nixpkgs following ours.
#[test]
fn the_flake_lock_matches_the_flake() {
    let nix = which("nix").unwrap_or_else(|| {
        panic!("nix is not installed: apt-get install nix-bin (evaluation only, no builds)")
    });
    // Only the two files Nix reads to check a lock; the outputs are not evaluated.
    let flake = tempfile::tempdir().unwrap();
    for file in ["flake.nix", "flake.lock"] {
        fs::copy(workspace_root().join(file), flake.path().join(file)).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let output = Command::new(nix)
        .args(["--extra-experimental-features", "nix-command flakes"])
        .arg("--store")
        .arg(store.path())
        .args(["flake", "metadata", "--json", "--offline", "--no-update-lock-file"])
        .arg(format!("path:{}", flake.path().display()))
        .env("HOME", flake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let locks = &metadata["locks"];
    assert_eq!(locks["version"], 7);
    let nodes = &locks["nodes"];
    assert_eq!(
        nodes["root"]["inputs"],
        serde_json::json!({"crane": "crane", "nixpkgs": "nixpkgs", "rust-overlay": "rust-overlay"})
    );
    assert_eq!(nodes["rust-overlay"]["inputs"]["nixpkgs"], serde_json::json!(["nixpkgs"]));
    for input in ["crane", "nixpkgs", "rust-overlay"] {
        let locked = &nodes[input]["locked"];
        assert_eq!(locked["type"], "github", "{input}");
        let rev = locked["rev"].as_str().unwrap_or_default();
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "{input}: rev {rev:?}"
        );
        let nar_hash = locked["narHash"].as_str().unwrap_or_default();
        assert!(
            nar_hash.starts_with("sha256-") && nar_hash.len() == 51,
            "{input}: narHash {nar_hash:?}"
        );
        assert!(locked["lastModified"].as_u64().is_some(), "{input}: lastModified");
    }
}

/// Each binary is a static x86_64 ELF: no dynamic loader, no shared library.
#[test]
fn binaries_are_static() {
    const EM_X86_64: u16 = 62;
    for (name, image) in &spec().images {
        let bytes = fs::read(binary_of(image)).unwrap();
        assert_eq!(
            elf_facts(&bytes),
            ElfFacts { machine: EM_X86_64, interpreter: false, needed: 0 },
            "{name}: {} must be a static binary",
            binary_of(image).display()
        );
    }
}

/// The job image runs procure, process and egress of one node against a bound data directory,
/// exactly as a Batch array child with EFS mounted at /mnt/efs.
#[test]
fn job_image_runs_a_node() {
    let image = image("nton-job");
    let root = image_root(image);
    let efs = shared_dir();
    let results = shared_dir();
    let workflow = Uuid::new_v4().to_string();
    let node = 3u32;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();

    let node_dir = efs.path().join(&workflow).join(node.to_string());
    fs::create_dir_all(node_dir.join("prep")).unwrap();
    for dir in [efs.path().join(&workflow), node_dir.clone()] {
        fs::set_permissions(&dir, fs::metadata(efs.path()).unwrap().permissions()).unwrap();
    }
    let ids_csv: String = ids.iter().map(|id| format!("{id}\n")).collect();
    fs::write(node_dir.join("prep/ids.csv"), ids_csv).unwrap();

    let stage = |name: &str| {
        let output = Run::new(image, root.as_ref())
            .arg(name)
            .env("NTON_WORKFLOW_ID", &workflow)
            .env("NTON_DATA_ROOT", "/mnt/efs")
            .env("AWS_BATCH_JOB_ARRAY_INDEX", &node.to_string())
            .env("NTON_RESULTS_URL", "file:///mnt/results")
            .bind(efs.path(), "/mnt/efs")
            .bind(results.path(), "/mnt/results")
            .output();
        assert!(output.status.success(), "nton-job {name} in its image:\n{}", describe(&output));
    };

    stage("procure");
    // Under Docker the files are written as the image's user, as Batch runs it; bwrap maps
    // that user to whoever runs the test.
    if matches!(runner(), Runner::Docker { .. }) {
        use std::os::unix::fs::MetadataExt;
        let data_dir = fs::metadata(node_dir.join("data")).unwrap();
        assert_eq!(
            (data_dir.uid(), data_dir.gid()),
            (image.user.uid, image.user.gid),
            "procure wrote as the image's user"
        );
    }
    let mut data = BTreeMap::new();
    for id in &ids {
        let path = node_dir.join("data").join(format!("{id}.json"));
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let points: Vec<DataPoint> = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        assert_eq!(points.len() as u64, POINTS, "{}", path.display());
        for (k, point) in (1..).zip(&points) {
            assert_eq!(point.timestamp, FIRST_TIMESTAMP_MS + k * STEP_MS);
            assert!((VALUE_MIN..VALUE_MAX).contains(&point.value), "{point:?}");
        }
        data.insert(*id, points);
    }

    stage("process");
    for id in &ids {
        let path = node_dir.join("results").join(format!("{id}.json"));
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let points: Vec<ResultPoint> = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let expected: Vec<ResultPoint> = data[id]
            .iter()
            .map(|p| ResultPoint { timestamp: p.timestamp, open: p.value > OPEN_ABOVE })
            .collect();
        assert_eq!(points, expected, "{}", path.display());
    }

    stage("egress");
    for id in &ids {
        let key = format!("{workflow}/{node}/results/{id}.json");
        let shipped = fs::read(results.path().join(&key))
            .unwrap_or_else(|e| panic!("egress did not ship {key}: {e}"));
        let source = fs::read(node_dir.join("results").join(format!("{id}.json"))).unwrap();
        assert_eq!(shipped, source, "{key}");
    }

    // A stage that cannot work says why, in its image too (no shell to explain it otherwise).
    let output = Run::new(image, root.as_ref())
        .arg("procure")
        .env("NTON_DATA_ROOT", "/mnt/efs")
        .bind(efs.path(), "/mnt/efs")
        .output();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("NTON_WORKFLOW_ID"),
        "the error names the missing variable:\n{}",
        describe(&output)
    );
}

/// The Lambda images start and, outside Lambda, stop at once with one line naming
/// AWS_LAMBDA_RUNTIME_API and a non-zero exit; with the variables Lambda sets but no runtime
/// API listening, they fail (non-zero) naming the address instead of hanging.
#[test]
fn lambda_images_fail_clearly_without_a_runtime_api() {
    for image in spec().images.values().filter(|image| image.is_lambda()) {
        let root = image_root(image);
        let efs = shared_dir();

        let output = Run::new(image, root.as_ref()).output();
        assert!(!output.status.success(), "{}: {}", image.package, describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.lines().any(|line| line.contains("AWS_LAMBDA_RUNTIME_API")),
            "{}: stderr names AWS_LAMBDA_RUNTIME_API:\n{}",
            image.package,
            describe(&output)
        );

        // Nothing listens on the discard port inside the fresh network namespace.
        let output = Run::new(image, root.as_ref())
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_LAMBDA_FUNCTION_NAME", &image.package)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_REGION", "eu-west-1")
            .env("NTON_DATA_ROOT", "/mnt/efs")
            .bind(efs.path(), "/mnt/efs")
            .output();
        assert!(!output.status.success(), "{}: {}", image.package, describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("127.0.0.1:9"),
            "{}: stderr names the runtime API address:\n{}",
            image.package,
            describe(&output)
        );
    }
}

/// Every image is its binary plus a few hundred KB: at most 1.3x the binary, at most 10 MB
/// gzip-compressed. (The original sample's images were amazonlinux + python + awscli:
/// hundreds of MB each.)
#[test]
fn images_are_small() {
    let mut report = String::from("image        binary      rootfs   ratio   tar.gz\n");
    let mut failures = Vec::new();
    for (name, image) in &spec().images {
        let root = Rootfs::lay_out(image);
        let binary = fs::metadata(binary_of(image)).unwrap().len();
        let rootfs = root.size();
        let compressed = root.compressed_size();
        let ratio = rootfs as f64 / binary as f64;
        report.push_str(&format!(
            "{name:<11} {binary:>8} B {rootfs:>8} B  {ratio:>5.3}  {compressed:>8} B\n"
        ));
        if ratio > MAX_IMAGE_TO_BINARY {
            failures.push(format!("{name}: {rootfs} B is {ratio:.3}x its binary ({binary} B)"));
        }
        if compressed > MAX_COMPRESSED_IMAGE {
            failures.push(format!(
                "{name}: {compressed} B compressed is over {MAX_COMPRESSED_IMAGE} B"
            ));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}

/// The ELF reader itself, on files whose nature is known: this test binary (dynamically
/// linked on a gnu host, so it names its loader and libc) and a hand-made static header.
#[test]
fn elf_reader_tells_static_from_dynamic() {
    let me = fs::read(std::env::current_exe().unwrap()).unwrap();
    let facts = elf_facts(&me);
    if cfg!(target_env = "gnu") {
        assert!(facts.interpreter && facts.needed > 0, "{facts:?}");
    }

    // A minimal static executable: ELF header and one PT_LOAD, no PT_INTERP, no PT_DYNAMIC.
    let mut elf = vec![0u8; 64 + 56 + 16];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[18..20].copy_from_slice(&62u16.to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes());
    elf[54..56].copy_from_slice(&56u16.to_le_bytes());
    elf[56..58].copy_from_slice(&1u16.to_le_bytes());
    elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    assert_eq!(elf_facts(&elf), ElfFacts { machine: 62, interpreter: false, needed: 0 });
}

// ---------------------------------------------------------------------------------------------
// A Lambda image answering one event

/// The Lambda Runtime API as Lambda serves it to a function, for one invocation: hands out
/// `event` on the first `GET /2018-06-01/runtime/invocation/next`, and returns what the
/// function posted to `.../response` or `.../error`. Written here (a few lines of HTTP/1.1
/// over std's TcpListener) because no kept crate serves the runtime side of this API; under
/// Docker the AWS Lambda Runtime Interface Emulator plays this part instead.
struct RuntimeApi {
    address: String,
    answer: std::sync::mpsc::Receiver<(String, String)>,
}

const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

impl RuntimeApi {
    fn serve(event: serde_json::Value) -> RuntimeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (send, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut handed_out = false;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let send = send.clone();
                let event = event.to_string();
                let first = !handed_out;
                handed_out = true;
                // One thread per connection: the function may keep one open per request kind.
                std::thread::spawn(move || serve_connection(stream, &event, first, &send));
            }
        });
        RuntimeApi { address, answer }
    }
}

fn serve_connection(
    stream: std::net::TcpStream,
    event: &str,
    mut first: bool,
    send: &std::sync::mpsc::Sender<(String, String)>,
) {
    use std::io::BufRead;
    let mut reader = io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            if !first {
                // The next invocation never comes: the test ends the function.
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            first = false;
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 60_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:nton\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1\r\n\r\n",
                event.len()
            );
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(event.as_bytes());
        } else if method == "POST" {
            let kind = path.rsplit('/').next().unwrap_or("").to_string();
            let _ = writer.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n",
            );
            let _ = send.send((kind, String::from_utf8_lossy(&body).into_owned()));
        } else {
            let _ = writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// Invokes a Lambda image once with `event`, `efs` bound at /mnt/efs: under bwrap through
/// [`RuntimeApi`], under Docker through the RIE (`docker run` with the RIE as entrypoint and
/// the image's binary as its handler, the event posted to its invocations endpoint). Returns
/// `("response" | "error", body)`.
fn invoke(image: &Image, efs: &Path, event: serde_json::Value) -> (String, String) {
    let lambda_env = [
        ("AWS_LAMBDA_FUNCTION_NAME", image.package.as_str()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "eu-west-1"),
        ("NTON_DATA_ROOT", "/mnt/efs"),
    ];
    match runner() {
        Runner::Bwrap => {
            let root = Rootfs::lay_out(image);
            let api = RuntimeApi::serve(event);
            let mut run = Run::new(image, Some(&root))
                .env("AWS_LAMBDA_RUNTIME_API", &api.address)
                .bind(efs, "/mnt/efs");
            for (name, value) in lambda_env {
                run = run.env(name, value);
            }
            run.share_net = true;
            let mut child = run
                .command()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bwrap starts");
            let answer = api.answer.recv_timeout(RUN_TIMEOUT);
            child.kill().ok();
            let output = child.wait_with_output().unwrap();
            answer.unwrap_or_else(|_| {
                panic!(
                    "{} posted no answer within {RUN_TIMEOUT:?}:\n{}",
                    image.package,
                    String::from_utf8_lossy(&output.stderr)
                )
            })
        }
        Runner::Docker { archives, rie } => {
            let reference = docker_image(image, archives);
            let mut cmd = Command::new("docker");
            cmd.args(["run", "--detach", "--rm", "--read-only", "--tmpfs", "/tmp"]);
            cmd.args(["--publish", "127.0.0.1::8080"]);
            cmd.arg("--volume").arg(format!("{}:/aws-lambda-rie:ro", rie.display()));
            cmd.arg("--volume").arg(format!("{}:/mnt/efs", efs.display()));
            for (name, value) in lambda_env {
                cmd.arg("--env").arg(format!("{name}={value}"));
            }
            cmd.args(["--entrypoint", "/aws-lambda-rie", &reference, image.binary_path()]);
            let started = cmd.output().expect("docker runs");
            assert!(started.status.success(), "{}", describe(&started));
            let container = String::from_utf8_lossy(&started.stdout).trim().to_string();
            let port =
                Command::new("docker").args(["port", &container, "8080/tcp"]).output().unwrap();
            let port = String::from_utf8_lossy(&port.stdout);
            let address = port.lines().next().unwrap_or_default().trim().to_string();
            // The RIE answers an error as the function's error document with status 200, and
            // tells it apart by the X-Amz-Function-Error header; curl prints both.
            let start = Instant::now();
            let answer = loop {
                let output = Command::new("curl")
                    .args(["--silent", "--show-error", "--include", "--max-time", "60"])
                    .args(["-H", "Content-Type: application/json", "--data-binary"])
                    .arg(event.to_string())
                    .arg(format!("http://{address}/2015-03-31/functions/function/invocations"))
                    .output()
                    .unwrap();
                if output.status.success() {
                    break String::from_utf8_lossy(&output.stdout).into_owned();
                }
                assert!(
                    start.elapsed() < RUN_TIMEOUT,
                    "the RIE never answered: {}",
                    describe(&output)
                );
                std::thread::sleep(Duration::from_millis(200));
            };
            let logs = Command::new("docker").args(["logs", &container]).output().unwrap();
            Command::new("docker").args(["rm", "--force", &container]).output().ok();
            let (head, body) = answer
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("not an HTTP answer: {answer}\n{}", describe(&logs)));
            // Whether the RIE marks a function error with the header depends on its version;
            // the error document (errorType and errorMessage) is what Lambda returns either way.
            let document: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let is_error =
                document.get("errorType").is_some() && document.get("errorMessage").is_some();
            let kind = if is_error || head.to_ascii_lowercase().contains("x-amz-function-error") {
                "error"
            } else {
                "response"
            };
            (kind.to_string(), body.to_string())
        }
    }
}

/// Each Lambda image answers a real event through the Lambda Runtime API, as its user: init
/// plans a run and writes every node's prep files to the bound EFS; the watcher refuses an
/// event without its jobs with the error the state machine sees (its Batch calls are tested
/// against moto in watch_moto.rs).
#[test]
fn lambda_images_answer_an_event() {
    let efs = shared_dir();
    let (kind, body) =
        invoke(image("nton-init"), efs.path(), serde_json::json!({"ids": 10, "idsPerNode": 4}));
    assert_eq!(kind, "response", "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["nodes"], 3, "{answer}");
    assert_eq!(answer["ids"], 10, "{answer}");
    let workflow = answer["workflowId"].as_str().expect("a workflow id");
    for (node, expected) in [(0, 4), (1, 4), (2, 2)] {
        let path = efs.path().join(workflow).join(node.to_string()).join("prep/ids.csv");
        let ids = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(ids.lines().count(), expected, "{}", path.display());
        for id in ids.lines() {
            Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id:?} in {}: {e}", path.display()));
        }
    }

    let efs = shared_dir();
    let (kind, body) = invoke(
        image("nton-watch"),
        efs.path(),
        serde_json::json!({"workflowId": workflow, "nodes": 3}),
    );
    assert_eq!(kind, "error", "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["errorMessage"].as_str().is_some_and(|m| m.contains("jobs: missing")), "{error}");
}
