//! Debian's headless Chromium for the report tests: the DOM it parsed from a page, and a
//! screenshot's share of coloured pixels (a blank or error page has almost none).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's Chromium (tests/tools.sh installs it); NTON_CHROMIUM overrides.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("NTON_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: tests/tools.sh installs Debian's chromium",
        path.display()
    );
    path
}

/// Opens `page` in a headless Chromium with a fresh profile and `extra` flags.
pub fn headless(page: &Path, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("a temporary profile");
    Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts")
}

/// The page's DOM as Chromium parsed it (SVG elements are there only if the page is well formed).
pub fn dom(page: &Path) -> String {
    String::from_utf8_lossy(&headless(page, &["--dump-dom"]).stdout).into_owned()
}

/// Takes a 1200x900 screenshot of `page` into `png` and returns `(coloured, total)` pixels:
/// coloured ones differ between two channels by more than 40.
pub fn screenshot_colour(page: &Path, png: &Path) -> (usize, usize) {
    let shot =
        headless(page, &["--window-size=1200,900", &format!("--screenshot={}", png.display())]);
    assert!(png.is_file(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("the screenshot opens"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let frame = reader.next_frame(&mut pixels).expect("a frame");
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let coloured = pixels
        .chunks(channels)
        .filter(|p| {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            (r - g).abs() > 40 || (g - b).abs() > 40 || (r - b).abs() > 40
        })
        .count();
    (coloured, pixels.len() / channels)
}
