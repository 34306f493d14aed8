//! File IDs and remote file names (PROTOCOL.md §5).
//!
//! A file ID is `group/Mxx/HH/HH/<name>`. Everything after `group/` is the
//! *logic filename*; `HH/HH/<name>` is the path below `<store_path>/data/`.
//! `<name>` starts with 27 characters of URL-safe base64 that encode 20
//! bytes: source server, creation time, a size field with flags, and CRC32.
//!
//! Parsing is also the security boundary for paths: a logic filename that
//! parses can only name a file inside a store path's `data` directory.

use std::fmt;
use std::net::Ipv4Addr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::FileIdError;

/// Length of the base64 part of a name (20 bytes).
pub const B64_LEN: usize = 27;
/// Length of the extension part: random digits, a dot and the extension.
pub const EXT_PART_LEN: usize = 7;
/// Length of the base64 trunk-location part (12 bytes).
pub const TRUNK_B64_LEN: usize = 16;
/// `Mxx/HH/HH/`
pub const PATH_PREFIX_LEN: usize = 10;
/// Logic filename length of a normal or appender file.
pub const NORMAL_LOGIC_LEN: usize = PATH_PREFIX_LEN + B64_LEN + EXT_PART_LEN;
/// Logic filename length of a file packed into a trunk.
pub const TRUNK_LOGIC_LEN: usize = NORMAL_LOGIC_LEN + TRUNK_B64_LEN;
/// Longest logic filename accepted on the wire.
pub const MAX_LOGIC_LEN: usize = 127;
/// Maximum length of an extension, without the dot.
pub const MAX_EXT_LEN: usize = 6;
/// Maximum length of a slave prefix.
pub const MAX_PREFIX_LEN: usize = 16;
/// Maximum length of a group name.
pub const MAX_GROUP_LEN: usize = 16;

const APPENDER_BIT: u64 = 1 << 58;
const TRUNK_BIT: u64 = 1 << 59;
const RANDOM_BIT: u64 = 1 << 63;
const SIZE_4G: u64 = 1 << 32;

/// A valid group name: 1 to 16 characters of `[A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    pub fn new(s: &str) -> Result<Self, FileIdError> {
        if s.is_empty() || s.len() > MAX_GROUP_LEN || !s.bytes().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(FileIdError::BadGroup(s.to_owned()));
        }
        Ok(GroupName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which server created a file: its IPv4 address or its numeric storage ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceServer {
    Ip(Ipv4Addr),
    Id(u32),
}

impl SourceServer {
    fn to_bytes(self) -> [u8; 4] {
        match self {
            SourceServer::Ip(ip) => ip.octets(),
            SourceServer::Id(id) => id.to_le_bytes(),
        }
    }

    fn from_bytes(b: [u8; 4]) -> Self {
        let v = u32::from_le_bytes(b);
        if v > 0 && v <= 0xFF_FFFF {
            SourceServer::Id(v)
        } else {
            SourceServer::Ip(Ipv4Addr::from(b))
        }
    }
}

impl fmt::Display for SourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceServer::Ip(ip) => write!(f, "{ip}"),
            SourceServer::Id(id) => write!(f, "{id}"),
        }
    }
}

/// What kind of file a name describes, from its size-field flags and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Normal,
    Appender,
    Trunk(TrunkSlot),
    /// A slave name: master's base name, then prefix and extension.
    Slave,
}

/// Where a trunk-packed file lives inside its trunk file (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkSlot {
    pub trunk_id: u32,
    pub offset: u32,
    pub alloc_size: u32,
}

/// The 20 bytes encoded at the start of every name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameInfo {
    pub source: SourceServer,
    /// Creation time, unix seconds.
    pub timestamp: u32,
    /// The raw 64-bit size field with its flag bits.
    pub size_field: u64,
    pub crc32: u32,
}

impl NameInfo {
    /// Builds the size field for a new file. `random23` supplies the 23
    /// random bits of the randomised form (files under 4 GiB).
    pub fn size_field_for(size: u64, appender: bool, random23: u32) -> u64 {
        if appender {
            return RANDOM_BIT | (((random23 & 0x7F_FFFF) as u64) << 32) | APPENDER_BIT;
        }
        if size < SIZE_4G {
            RANDOM_BIT | (((random23 & 0x7F_FFFF) as u64) << 32) | size
        } else {
            size
        }
    }

    /// The size field of a new file packed into a trunk slot (§5.3: the
    /// randomised form with the trunk bit).
    pub fn size_field_for_trunk(size: u32, random23: u32) -> u64 {
        RANDOM_BIT | TRUNK_BIT | (((random23 & 0x7F_FFFF) as u64) << 32) | u64::from(size)
    }

    pub fn is_appender(&self) -> bool {
        self.size_field & APPENDER_BIT != 0
    }

    pub fn is_trunk(&self) -> bool {
        self.size_field & TRUNK_BIT != 0 && !self.is_appender()
    }

    /// The file size the name records; `None` for appender files, whose
    /// size changes and must be read from the file.
    pub fn file_size(&self) -> Option<u64> {
        if self.is_appender() {
            None
        } else if self.size_field & (RANDOM_BIT | TRUNK_BIT) != 0 {
            Some(self.size_field & 0xFFFF_FFFF)
        } else {
            Some(self.size_field)
        }
    }

    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..4].copy_from_slice(&self.source.to_bytes());
        b[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.size_field.to_be_bytes());
        b[16..20].copy_from_slice(&self.crc32.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 20]) -> Self {
        NameInfo {
            source: SourceServer::from_bytes([b[0], b[1], b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            size_field: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            crc32: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        }
    }

    /// The 27 base64 characters.
    pub fn encode_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    pub fn decode_b64(s: &str) -> Result<Self, FileIdError> {
        if s.len() != B64_LEN {
            return Err(FileIdError::BadBase64(s.to_owned()));
        }
        let v = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| FileIdError::BadBase64(s.to_owned()))?;
        let arr: [u8; 20] = v
            .try_into()
            .map_err(|_| FileIdError::BadBase64(s.to_owned()))?;
        Ok(NameInfo::from_bytes(&arr))
    }
}

impl TrunkSlot {
    pub fn encode_b64(&self) -> String {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.trunk_id.to_be_bytes());
        b[4..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.alloc_size.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode_b64(s: &str) -> Result<Self, FileIdError> {
        let v = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| FileIdError::BadBase64(s.to_owned()))?;
        if v.len() != 12 {
            return Err(FileIdError::BadBase64(s.to_owned()));
        }
        let u = |i: usize| u32::from_be_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        Ok(TrunkSlot {
            trunk_id: u(0),
            offset: u(4),
            alloc_size: u(8),
        })
    }
}

/// Checks an extension (without the dot): up to 6 chars of `[A-Za-z0-9_.-]`,
/// not starting with a dot (the name would then contain `..` and never
/// parse again).
pub fn validate_ext(ext: &str) -> Result<(), FileIdError> {
    if ext.len() > MAX_EXT_LEN
        || !ext.bytes().all(is_name_char)
        || ext.starts_with('.')
        || ext.contains("..")
    {
        return Err(FileIdError::BadExt(ext.to_owned()));
    }
    Ok(())
}

/// Checks a slave prefix: 1 to 16 chars of `[A-Za-z0-9_.-]`, and not `..`.
pub fn validate_prefix(prefix: &str) -> Result<(), FileIdError> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix.bytes().all(is_name_char)
        || prefix.contains("..")
    {
        return Err(FileIdError::BadPrefix(prefix.to_owned()));
    }
    Ok(())
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-'
}

/// Builds the 7-character extension part: `(6 - L)` random digits, a dot and
/// the extension, or 7 random digits when there is no extension.
/// `random` supplies the digits (only its decimal digits are used).
pub fn ext_part(ext: &str, random: u32) -> Result<String, FileIdError> {
    validate_ext(ext)?;
    if ext.is_empty() {
        return Ok(format!("{:07}", random % 10_000_000));
    }
    let width = MAX_EXT_LEN - ext.len();
    // A 6-character extension leaves no room for digits (`{:00}` would
    // still print one and make the part 8 characters long).
    if width == 0 {
        return Ok(format!(".{ext}"));
    }
    let digits = format!("{:0width$}", random % 10u32.pow(width as u32));
    Ok(format!("{digits}.{ext}"))
}

/// A parsed logic filename `Mxx/HH/HH/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicName {
    pub store_path: u8,
    pub sub_high: u8,
    pub sub_low: u8,
    /// `<name>`: the file's name inside its subdirectory.
    pub name: String,
    pub info: NameInfo,
    pub kind: FileKind,
}

impl LogicName {
    /// Assembles a logic filename from its parts (a new normal, appender or
    /// trunk file). `ext_part` comes from [`ext_part`].
    pub fn build(
        store_path: u8,
        sub_high: u8,
        sub_low: u8,
        info: NameInfo,
        trunk: Option<TrunkSlot>,
        ext_part: &str,
    ) -> LogicName {
        let mut name = info.encode_b64();
        if let Some(t) = trunk {
            name.push_str(&t.encode_b64());
        }
        name.push_str(ext_part);
        let kind = match trunk {
            Some(t) => FileKind::Trunk(t),
            None if info.is_appender() => FileKind::Appender,
            None => FileKind::Normal,
        };
        LogicName {
            store_path,
            sub_high,
            sub_low,
            name,
            info,
            kind,
        }
    }

    /// Parses and validates a logic filename. Anything that could name a
    /// path outside `<store_path>/data/HH/HH/` is refused.
    pub fn parse(s: &str) -> Result<LogicName, FileIdError> {
        if s.is_empty() {
            return Err(FileIdError::Empty);
        }
        if s.len() > MAX_LOGIC_LEN {
            return Err(FileIdError::TooLong(s.len()));
        }
        if let Some(c) = s.chars().find(|&c| c == '\\' || c == '\0' || !c.is_ascii()) {
            return Err(FileIdError::ForbiddenChar(c));
        }
        if s.len() < NORMAL_LOGIC_LEN {
            return Err(FileIdError::TooShort(s.to_owned()));
        }
        let b = s.as_bytes();
        if b[0] != b'M' || b[3] != b'/' {
            return Err(FileIdError::BadStorePath(s[..4.min(s.len())].to_owned()));
        }
        let store_path =
            parse_hex2(&s[1..3]).ok_or_else(|| FileIdError::BadStorePath(s[..3].to_owned()))?;
        if b[6] != b'/' || b[9] != b'/' {
            return Err(FileIdError::BadSubdir(s[4..10].to_owned()));
        }
        let sub_high =
            parse_hex2(&s[4..6]).ok_or_else(|| FileIdError::BadSubdir(s[4..6].to_owned()))?;
        let sub_low =
            parse_hex2(&s[7..9]).ok_or_else(|| FileIdError::BadSubdir(s[7..9].to_owned()))?;
        let name = &s[PATH_PREFIX_LEN..];
        if let Some(c) = name.bytes().find(|&c| !is_name_char(c)) {
            return Err(FileIdError::ForbiddenChar(c as char));
        }
        if name.contains("..") {
            return Err(FileIdError::ForbiddenChar('.'));
        }
        let info = NameInfo::decode_b64(&name[..B64_LEN])?;
        let rest = &name[B64_LEN..];
        let kind = if s.len() == NORMAL_LOGIC_LEN {
            check_ext_part(rest)?;
            if info.is_appender() {
                FileKind::Appender
            } else {
                FileKind::Normal
            }
        } else if s.len() == TRUNK_LOGIC_LEN && info.is_trunk() {
            let slot = TrunkSlot::decode_b64(&rest[..TRUNK_B64_LEN])?;
            check_ext_part(&rest[TRUNK_B64_LEN..])?;
            FileKind::Trunk(slot)
        } else {
            FileKind::Slave
        };
        Ok(LogicName {
            store_path,
            sub_high,
            sub_low,
            name: name.to_owned(),
            info,
            kind,
        })
    }

    /// Refuses a subdirectory outside `0..subdir_count`.
    pub fn check_subdirs(&self, subdir_count: u32) -> Result<(), FileIdError> {
        for v in [self.sub_high, self.sub_low] {
            if u32::from(v) >= subdir_count {
                return Err(FileIdError::SubdirOutOfRange {
                    value: v,
                    count: subdir_count,
                });
            }
        }
        Ok(())
    }

    /// `HH/HH/<name>`: the path below `<store_path>/data/`.
    pub fn relative_path(&self) -> String {
        format!("{:02X}/{:02X}/{}", self.sub_high, self.sub_low, self.name)
    }

    /// The extension (without the dot) the name ends with, if any.
    pub fn ext(&self) -> &str {
        let tail = &self.name[self.name.len().saturating_sub(EXT_PART_LEN)..];
        match tail.rfind('.') {
            Some(p) => &tail[p + 1..],
            None => "",
        }
    }

    pub fn is_slave(&self) -> bool {
        self.kind == FileKind::Slave
    }

    /// Derives the name of a slave of this (master) file (§5.4): the master
    /// name without its `.ext`, then `prefix`, then `.ext` (none when `ext`
    /// is empty).
    pub fn slave(&self, prefix: &str, ext: &str) -> Result<LogicName, FileIdError> {
        // A trunk-packed master (upstream's small files) takes slaves too:
        // thumbnails of small images are their common use.
        if self.kind == FileKind::Slave {
            return Err(FileIdError::NotMaster(self.to_string()));
        }
        validate_prefix(prefix)?;
        let ext = ext.strip_prefix('.').unwrap_or(ext);
        validate_ext(ext)?;
        if prefix == "-m" && ext.is_empty() {
            return Err(FileIdError::BadPrefix(prefix.to_owned()));
        }
        let tail_start = self.name.len() - EXT_PART_LEN;
        let stem = match self.name[tail_start..].find('.') {
            Some(p) => &self.name[..tail_start + p],
            None => &self.name[..],
        };
        let mut name = format!("{stem}{prefix}");
        if !ext.is_empty() {
            name.push('.');
            name.push_str(ext);
        }
        let logic = format!(
            "M{:02X}/{:02X}/{:02X}/{}",
            self.store_path, self.sub_high, self.sub_low, name
        );
        let slave = LogicName::parse(&logic)?;
        // A short prefix and extension can give a name of normal length,
        // which every reader (ours and upstream's) would take for a master.
        if slave.kind != FileKind::Slave {
            return Err(FileIdError::TooShort(logic));
        }
        Ok(slave)
    }
}

impl fmt::Display for LogicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "M{:02X}/{:02X}/{:02X}/{}",
            self.store_path, self.sub_high, self.sub_low, self.name
        )
    }
}

fn check_ext_part(s: &str) -> Result<(), FileIdError> {
    debug_assert_eq!(s.len(), EXT_PART_LEN);
    match s.find('.') {
        None if s.bytes().all(|c| c.is_ascii_digit()) => Ok(()),
        Some(p) if s[..p].bytes().all(|c| c.is_ascii_digit()) && p + 1 < s.len() => {
            validate_ext(&s[p + 1..])
        }
        _ => Err(FileIdError::BadExt(s.to_owned())),
    }
}

fn parse_hex2(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    if b.len() != 2
        || !b
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
    {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

/// A full file ID: `group/Mxx/HH/HH/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    pub group: GroupName,
    pub logic: LogicName,
}

impl FileId {
    /// Splits at the first `/` (as the C and Java clients do) and validates
    /// both parts.
    pub fn parse(s: &str) -> Result<FileId, FileIdError> {
        if s.is_empty() {
            return Err(FileIdError::Empty);
        }
        let (g, l) = s.split_once('/').ok_or(FileIdError::MissingGroup)?;
        Ok(FileId {
            group: GroupName::new(g)?,
            logic: LogicName::parse(l)?,
        })
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.logic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE_ID: &str = "group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";

    #[test]
    fn decodes_the_deployment_guide_id() {
        let id = FileId::parse(GUIDE_ID).unwrap();
        assert_eq!(id.group.as_str(), "group2");
        assert_eq!(id.logic.store_path, 0);
        assert_eq!((id.logic.sub_high, id.logic.sub_low), (0, 0));
        let info = id.logic.info;
        assert_eq!(
            info.source,
            SourceServer::Ip(Ipv4Addr::new(192, 168, 11, 83))
        );
        assert_eq!(info.timestamp, 1589774253);
        assert_eq!(info.file_size(), Some(170));
        assert_eq!(info.crc32, 0x8655F614);
        assert_eq!(id.logic.kind, FileKind::Normal);
        assert_eq!(id.logic.ext(), "zip");
        assert_eq!(
            id.logic.relative_path(),
            "00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip"
        );
    }

    #[test]
    fn builds_the_deployment_guide_id_back() {
        let info = NameInfo {
            source: SourceServer::Ip(Ipv4Addr::new(192, 168, 11, 83)),
            timestamp: 1589774253,
            size_field: NameInfo::size_field_for(170, false, 0x0f2f87),
            crc32: 0x8655F614,
        };
        let ext = ext_part("zip", 128).unwrap();
        assert_eq!(ext, "128.zip");
        let logic = LogicName::build(0, 0, 0, info, None, &ext);
        let id = FileId {
            group: GroupName::new("group2").unwrap(),
            logic,
        };
        assert_eq!(id.to_string(), GUIDE_ID);
    }

    #[test]
    fn server_id_and_appender_example() {
        let l = LogicName::parse("M00/00/00/oYYBAF7CB62EDy-HAAAAABI0q80123.txt").unwrap();
        assert_eq!(l.info.source, SourceServer::Id(100001));
        assert!(l.info.is_appender());
        assert_eq!(l.kind, FileKind::Appender);
        assert_eq!(l.info.file_size(), None);
        assert_eq!(l.info.crc32, 0x1234abcd);
    }

    #[test]
    fn trunk_example() {
        let s = "M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000.jpg";
        let l = LogicName::parse(s).unwrap();
        assert_eq!(
            l.kind,
            FileKind::Trunk(TrunkSlot {
                trunk_id: 1,
                offset: 2048,
                alloc_size: 256
            })
        );
        assert_eq!(l.info.file_size(), Some(170));
        assert_eq!(l.to_string(), s);
    }

    #[test]
    fn large_sizes_use_the_raw_form() {
        let f = NameInfo::size_field_for(5 << 30, false, 0x7fffff);
        assert_eq!(f, 5 << 30);
        let info = NameInfo {
            source: SourceServer::Ip(Ipv4Addr::new(10, 0, 0, 1)),
            timestamp: 1,
            size_field: f,
            crc32: 0,
        };
        assert_eq!(info.file_size(), Some(5 << 30));
    }

    #[test]
    fn slave_names() {
        let m = LogicName::parse("M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip").unwrap();
        let s = m.slave("_150x150", "jpg").unwrap();
        assert_eq!(
            s.to_string(),
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128_150x150.jpg"
        );
        assert_eq!(s.kind, FileKind::Slave);
        let s = m.slave("_noext", "").unwrap();
        assert_eq!(
            s.to_string(),
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128_noext"
        );
        assert!(m.slave("a/b", "jpg").is_err());
        assert!(m.slave("", "jpg").is_err());
        assert!(m.slave("-m", "").is_err());
        assert!(s.slave("_x", "jpg").is_err());
        // Regression (property test): slave names of normal length or less
        // are refused, not returned as a "normal" name.
        assert_eq!(
            m.slave("12", "b"),
            Err(FileIdError::TooShort(
                "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ12812.b".into()
            ))
        );
        assert!(m.slave("_", "").is_err());
        // A trunk-packed master (§5.5) has slaves too, named the same way.
        let t = LogicName::parse("M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000.jpg")
            .unwrap();
        let s = t.slave("_150x150", "jpg").unwrap();
        assert_eq!(
            s.to_string(),
            "M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000_150x150.jpg"
        );
        assert_eq!(s.kind, FileKind::Slave);
        // One that would come out at the trunk length is refused.
        assert!(t.slave("_", "jp").is_err());
    }

    #[test]
    fn hostile_names_are_refused() {
        let bad = [
            "",
            "M00/00/00/../../../../etc/passwd_xxxxxxxxxxxxxxxxxx",
            "/etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip/..",
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128\\zip",
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128\0zip",
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128..zip",
            "MG0/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "M00/0a/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
            "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9h!128.zip",
            "M00/x",
        ];
        for b in bad {
            assert!(LogicName::parse(b).is_err(), "{b:?} was accepted");
        }
        let long = format!("M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ{}", "a".repeat(120));
        assert_eq!(
            LogicName::parse(&long),
            Err(FileIdError::TooLong(long.len()))
        );
        let l = LogicName::parse("M00/FF/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip").unwrap();
        assert_eq!(
            l.check_subdirs(256),
            Ok(()),
            "FF is inside 256 subdirectories"
        );
        assert!(l.check_subdirs(16).is_err());
        assert_eq!(
            FileId::parse("../M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip"),
            Err(FileIdError::BadGroup("..".into()))
        );
        assert_eq!(FileId::parse("group1"), Err(FileIdError::MissingGroup));
        assert!(
            FileId::parse("group12345678901234/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip")
                .is_err()
        );
    }

    #[test]
    fn ext_part_is_always_seven_characters() {
        assert_eq!(ext_part("", 12345678).unwrap(), "2345678");
        assert_eq!(ext_part("zip", 128).unwrap(), "128.zip");
        assert_eq!(ext_part("jpeg", 999).unwrap(), "99.jpeg");
        // Regression (property test): a 6-character extension used to get
        // one digit anyway, giving an 8-character part and a name that
        // parsed as a slave.
        assert_eq!(ext_part("0a00A0", 5).unwrap(), ".0a00A0");
        let info = NameInfo {
            source: SourceServer::Ip(Ipv4Addr::new(0, 0, 0, 1)),
            timestamp: 0,
            size_field: NameInfo::size_field_for(0, false, 0),
            crc32: 0,
        };
        let l = LogicName::build(0, 0, 0, info, None, &ext_part("abcdef", 1).unwrap());
        assert_eq!(l.to_string().len(), NORMAL_LOGIC_LEN);
        assert_eq!(LogicName::parse(&l.to_string()).unwrap(), l);
        assert_eq!(l.ext(), "abcdef");
        // Regression (property test): a leading dot gave `..` in the name.
        assert_eq!(ext_part(".a", 1), Err(FileIdError::BadExt(".a".into())));
        assert!(ext_part("a..b", 1).is_err());
        assert_eq!(ext_part("a.b", 1).unwrap(), "001.a.b");
    }

    #[test]
    fn store_path_ff() {
        let l = LogicName::parse("MFF/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ1234567").unwrap();
        assert_eq!(l.store_path, 255);
        assert_eq!(l.ext(), "");
    }
}
