//! Reading a file a user names (a config, a manifest, a policy) without trusting it to be one:
//! a device such as `/dev/zero` or a runaway file must not hang a command or grow its memory.

use std::io::Read;
use std::path::Path;

/// The most a configuration-like file may hold; real ones are a few kilobytes.
pub const MAX_TEXT_FILE: u64 = 4 << 20;

/// The text of the regular file at `path`, refused when it is something else (a directory, a
/// device, a pipe) or larger than `max` bytes.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file; name the file itself",
        ));
    }
    let mut text = String::new();
    // The length can change while it is read; the limit holds either way.
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "larger than {max} bytes; is this the right file?"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_devices_directories_and_big_files_are_not() {
        let dir = std::env::temp_dir().join(format!("st2-basics-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.yaml");
        std::fs::write(&small, "a: 1\n").unwrap();
        assert_eq!(read_text(&small, 100).unwrap(), "a: 1\n");
        let err = read_text(&small, 3).unwrap_err().to_string();
        assert!(err.contains("larger than 3 bytes"), "{err}");
        let err = read_text(&dir, 100).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        if Path::new("/dev/zero").exists() {
            let err = read_text(Path::new("/dev/zero"), 100)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
