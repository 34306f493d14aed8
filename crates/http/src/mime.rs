//! Extension → MIME type: Apache `mime.types` files (`type ext1 ext2 ...`)
//! or a built-in table of the common types.

use std::collections::HashMap;
use std::path::Path;

use http::HeaderValue;

/// A lookup table from lower-case extension to content type.
#[derive(Debug, Clone)]
pub struct MimeTable {
    map: HashMap<String, MimeType>,
    default_type: MimeType,
}

/// A type as text and as the header value built once (None when the text
/// is not a valid header value: no Content-Type is sent then).
#[derive(Debug, Clone)]
struct MimeType {
    text: String,
    value: Option<HeaderValue>,
}

impl MimeType {
    fn new(text: &str) -> MimeType {
        MimeType {
            text: text.to_owned(),
            value: HeaderValue::from_str(text).ok(),
        }
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("shtml", "text/html"),
    ("css", "text/css"),
    ("xml", "text/xml"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("md", "text/markdown"),
    ("js", "application/javascript"),
    ("json", "application/json"),
    ("gif", "image/gif"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("png", "image/png"),
    ("webp", "image/webp"),
    ("bmp", "image/x-ms-bmp"),
    ("ico", "image/x-icon"),
    ("svg", "image/svg+xml"),
    ("svgz", "image/svg+xml"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("avif", "image/avif"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tgz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("rar", "application/x-rar-compressed"),
    ("7z", "application/x-7z-compressed"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("apk", "application/vnd.android.package-archive"),
    ("jar", "application/java-archive"),
    ("exe", "application/octet-stream"),
    ("bin", "application/octet-stream"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("wav", "audio/wav"),
    ("m4a", "audio/x-m4a"),
    ("mp4", "video/mp4"),
    ("m4v", "video/x-m4v"),
    ("webm", "video/webm"),
    ("flv", "video/x-flv"),
    ("mov", "video/quicktime"),
    ("avi", "video/x-msvideo"),
    ("wmv", "video/x-ms-wmv"),
    ("mkv", "video/x-matroska"),
    ("ts", "video/mp2t"),
    ("m3u8", "application/vnd.apple.mpegurl"),
];

impl MimeTable {
    /// The built-in table.
    pub fn builtin(default_type: &str) -> MimeTable {
        MimeTable {
            map: BUILTIN
                .iter()
                .map(|(e, t)| ((*e).to_owned(), MimeType::new(t)))
                .collect(),
            default_type: MimeType::new(default_type),
        }
    }

    /// Parses Apache `mime.types` text: `type ext ext...` per line, `#`
    /// comments. nginx-style `types { type ext; }` blocks are accepted too
    /// (braces and semicolons are ignored).
    pub fn parse(text: &str, default_type: &str) -> MimeTable {
        let mut map = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cleaned = line.replace([';', '{', '}'], " ");
            let mut words = cleaned.split_whitespace();
            let Some(ty) = words.next() else { continue };
            if !ty.contains('/') {
                continue;
            }
            for ext in words {
                map.insert(ext.to_ascii_lowercase(), MimeType::new(ty));
            }
        }
        MimeTable {
            map,
            default_type: MimeType::new(default_type),
        }
    }

    pub fn load(path: &Path, default_type: &str) -> std::io::Result<MimeTable> {
        Ok(Self::parse(&std::fs::read_to_string(path)?, default_type))
    }

    /// The type for an extension (without the dot), else the default type.
    pub fn lookup(&self, ext: &str) -> &str {
        &self.find(ext).text
    }

    /// [`lookup`](Self::lookup) as a header value, built once (cloning it
    /// does not copy). None when the type is not a valid header value.
    pub fn lookup_value(&self, ext: &str) -> Option<HeaderValue> {
        self.find(ext).value.clone()
    }

    pub fn default_type(&self) -> &str {
        &self.default_type.text
    }

    /// [`default_type`](Self::default_type) as a header value.
    pub fn default_value(&self) -> Option<HeaderValue> {
        self.default_type.value.clone()
    }

    fn find(&self, ext: &str) -> &MimeType {
        // Names are nearly always lower case already: no copy then.
        let found = if ext.bytes().any(|b| b.is_ascii_uppercase()) {
            self.map.get(&ext.to_ascii_lowercase())
        } else {
            self.map.get(ext)
        };
        found.unwrap_or(&self.default_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_lookup() {
        let t = MimeTable::builtin("application/octet-stream");
        assert_eq!(t.lookup("jpg"), "image/jpeg");
        assert_eq!(t.lookup("PNG"), "image/png");
        assert_eq!(t.lookup("zzz"), "application/octet-stream");
        assert_eq!(t.lookup(""), "application/octet-stream");
        assert_eq!(t.lookup_value("JPG").unwrap(), "image/jpeg");
        assert_eq!(t.default_value().unwrap(), "application/octet-stream");
        let bad = MimeTable::builtin("bad\ntype");
        assert!(bad.default_value().is_none());
        assert_eq!(bad.lookup_value("png").unwrap(), "image/png");
    }

    #[test]
    fn apache_format() {
        let text = "# comment\n\
                    image/jpeg\t\t\tjpeg jpg jpe\n\
                    application/x-custom   cus\n\
                    text/plain\n\
                    garbage line here\n\
                    types {\n  video/x-foo  foo fo2;\n}\n";
        let t = MimeTable::parse(text, "x/y");
        assert_eq!(t.lookup("jpe"), "image/jpeg");
        assert_eq!(t.lookup("cus"), "application/x-custom");
        assert_eq!(t.lookup("fo2"), "video/x-foo");
        assert_eq!(t.lookup("line"), "x/y");
        assert_eq!(t.lookup("png"), "x/y");
    }
}
