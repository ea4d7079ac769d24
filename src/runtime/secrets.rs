//! Keeping the process's secrets (the cloud token, Git credentials in
//! memory) from other processes of the same user: a hook or a child that
//! got to run as the controller's uid could otherwise read them from
//! `/proc/<pid>/environ` or `/proc/<pid>/mem`.

use std::path::{Path, PathBuf};

/// What went wrong keeping or reading a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot make the process non-dumpable: {0}")]
    NotDumpable(std::io::Error),
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    Unreadable { flag: String, path: PathBuf, source: std::io::Error },
    #[error("{flag} {}: the file is empty", path.display())]
    Empty { flag: String, path: PathBuf },
    #[error("{flag} {}: the file holds more than one word; it must hold the token alone", path.display())]
    NotOneWord { flag: String, path: PathBuf },
}

/// Makes the process non-dumpable: its `/proc/<pid>` files become root's and
/// no process of the same uid may ptrace it or read its environment.
pub fn forbid_inspection() -> Result<(), SecretError> {
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process.
    let result = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if result != 0 {
        return Err(SecretError::NotDumpable(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether [`forbid_inspection`] is in force.
pub fn inspection_forbidden() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) only reads a flag of this process.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 }
}

/// Takes `name` out of the environment, and overwrites its value where the
/// process's first environment lives: `/proc/<pid>/environ` (and a core
/// dump) shows that memory as it was at exec, whatever `remove_var` did.
///
/// # Safety
/// No other thread may read or write the environment meanwhile (call it
/// before the async runtime starts).
pub unsafe fn scrub_from_environment(name: &str) {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: `environ` is a null-terminated array of C strings; the caller
    // guarantees no other thread uses it; each write stays inside the string it found.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if text.len() > name.len() && text.starts_with(name.as_bytes()) && text[name.len()] == b'=' {
                std::ptr::write_bytes((*entry).add(name.len() + 1), 0, text.len() - name.len() - 1);
            }
            entry = entry.add(1);
        }
        std::env::remove_var(name);
    }
}

/// A token from a mounted file (a Secret's key), trimmed; an error names the file.
pub fn read_token_file(path: &Path, flag: &str) -> Result<String, SecretError> {
    let (flag, path) = (flag.to_owned(), path.to_owned());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(SecretError::Unreadable { flag, path, source }),
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(SecretError::Empty { flag, path });
    }
    if token.contains(char::is_whitespace) {
        return Err(SecretError::NotOneWord { flag, path });
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_can_be_made_non_dumpable() {
        forbid_inspection().unwrap();
        assert!(inspection_forbidden());
    }

    #[test]
    fn token_files_are_read_trimmed_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("arcadia-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("token");
        std::fs::write(&good, "dop_v1_abc\n").unwrap();
        assert_eq!(read_token_file(&good, "--t").unwrap(), "dop_v1_abc");
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        assert!(read_token_file(&empty, "--t").unwrap_err().to_string().ends_with("the file is empty"));
        let two = dir.join("two");
        std::fs::write(&two, "a b").unwrap();
        assert!(read_token_file(&two, "--t").unwrap_err().to_string().contains("more than one word"));
        let missing = read_token_file(&dir.join("missing"), "--t").unwrap_err().to_string();
        assert!(missing.starts_with("--t ") && missing.contains("cannot read it"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
