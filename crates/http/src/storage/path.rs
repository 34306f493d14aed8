//! Request path → logic filename. This is the security boundary: only a
//! path that `LogicName::parse` accepts (no `..`, no extra `/`, hex subdirs)
//! is ever joined to a store path.

use fdfs_proto::LogicName;

/// A validated request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    pub logic: LogicName,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("percent-encoded or non-ASCII bytes in the path")]
    Encoded,
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("group {0} is not served here")]
    OtherGroup(String),
    #[error("no group in the path")]
    MissingGroup,
    #[error("bad file name: {0}")]
    BadName(String),
}

/// Parses `/{group}/Mxx/HH/HH/<name>` (or `/Mxx/...` when
/// `url_have_group_name` is false; then a leading `/{our group}/` is still
/// accepted). File IDs never contain `%`, so any escape is refused rather
/// than decoded: `%2e%2e` and `%2f` cannot smuggle a traversal.
pub fn parse_request_path(
    path: &str,
    our_group: &str,
    url_have_group_name: bool,
) -> Result<RequestPath, PathError> {
    if path
        .bytes()
        .any(|c| c == b'%' || !c.is_ascii() || c.is_ascii_control())
    {
        return Err(PathError::Encoded);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let logic_text = match rest.split_once('/') {
        Some((first, tail)) if first == our_group => tail,
        Some((first, _)) if url_have_group_name => {
            if fdfs_proto::GroupName::new(first).is_ok() {
                return Err(PathError::OtherGroup(first.to_owned()));
            }
            return Err(PathError::MissingGroup);
        }
        _ if url_have_group_name => return Err(PathError::MissingGroup),
        _ => rest,
    };
    let logic = LogicName::parse(logic_text).map_err(|e| PathError::BadName(e.to_string()))?;
    Ok(RequestPath { logic })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";

    #[test]
    fn accepts_both_forms() {
        let p = parse_request_path(&format!("/group2/{NAME}"), "group2", true).unwrap();
        assert_eq!(p.logic.to_string(), NAME);
        let p = parse_request_path(&format!("/{NAME}"), "group2", false).unwrap();
        assert_eq!(p.logic.to_string(), NAME);
        let p = parse_request_path(&format!("/group2/{NAME}"), "group2", false).unwrap();
        assert_eq!(p.logic.to_string(), NAME);
        // "M00" is a valid group name: without the group, the path reads as
        // another group's.
        assert_eq!(
            parse_request_path(&format!("/{NAME}"), "group2", true),
            Err(PathError::OtherGroup("M00".into()))
        );
    }

    #[test]
    fn refuses_other_groups_and_traversal() {
        assert_eq!(
            parse_request_path(&format!("/group1/{NAME}"), "group2", true),
            Err(PathError::OtherGroup("group1".into()))
        );
        for bad in [
            "/group2/M00/00/00/../../../../etc/passwd",
            "/group2/M00/00/../00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "/group2/M00/%2e%2e/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "/group2/M00/00/00%2fwKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "/group2//etc/passwd",
            "/group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip/",
            "/group2/M00/0a/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "/group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ/2/.zip",
            "/group2/M0G/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "/group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip\\",
            "/group2/",
            "/",
            "",
        ] {
            assert!(
                parse_request_path(bad, "group2", true).is_err(),
                "accepted {bad:?}"
            );
            assert!(
                parse_request_path(bad, "group2", false).is_err(),
                "accepted {bad:?} without group"
            );
        }
    }
}
