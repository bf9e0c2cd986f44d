//! Validation of the paths tantivy asks for: relative, no `..`, valid UTF-8.

use std::path::{Component, Path};

use crate::format::record::MAX_NAME_LEN;

/// The canonical form of a virtual file path (components joined by `/`), or why it
/// is refused.
pub(crate) fn normalize(path: &Path) -> Result<String, &'static str> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or("path is not valid UTF-8")?),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("path is absolute"),
        }
    }
    if parts.is_empty() {
        return Err("path is empty");
    }
    let s = parts.join("/");
    if s.len() > MAX_NAME_LEN {
        return Err("path is too long");
    }
    if s.contains('\0') {
        return Err("path contains NUL");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(normalize(Path::new("meta.json")).unwrap(), "meta.json");
        assert_eq!(normalize(Path::new("./a/b.idx")).unwrap(), "a/b.idx");
        assert!(normalize(Path::new("/etc/passwd")).is_err());
        assert!(normalize(Path::new("../x")).is_err());
        assert!(normalize(Path::new("a/../../x")).is_err());
        assert!(normalize(Path::new("")).is_err());
        assert!(normalize(Path::new(".")).is_err());
        assert!(normalize(Path::new(&"a".repeat(5000))).is_err());
    }
}
