//! A blocking FastDFS wire client for tests: send exact bytes, read exact
//! replies, observe whether the server closed the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fdfs_proto::{encode_frame, Header, HEADER_LEN};

/// One test connection.
pub struct Wire {
    pub stream: TcpStream,
}

impl Wire {
    /// Connects with a 5 s read timeout.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Wire> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(Wire { stream })
    }

    /// Connects from a given local IP (e.g. a simulated storage 127.0.0.11).
    pub fn connect_from(local: std::net::Ipv4Addr, addr: SocketAddr) -> std::io::Result<Wire> {
        // SAFETY: plain socket syscalls on a descriptor we own; the fd is
        // handed to TcpStream which closes it.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        use std::os::fd::FromRawFd;
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let l = sin(local, 0);
        // SAFETY: `l` is a valid sockaddr_in of `len` bytes.
        if unsafe { libc::bind(fd, &l as *const _ as *const libc::sockaddr, len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let SocketAddr::V4(to) = addr else {
            return Err(std::io::Error::other("connect_from needs an IPv4 target"));
        };
        let r = sin(*to.ip(), to.port());
        // SAFETY: as above.
        if unsafe { libc::connect(fd, &r as *const _ as *const libc::sockaddr, len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(Wire { stream })
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b)
    }

    /// Sends one request (status byte 0).
    pub fn send(&mut self, cmd: u8, body: &[u8]) -> std::io::Result<()> {
        self.send_raw(&encode_frame(cmd, 0, body))
    }

    /// Reads one reply: header and body.
    pub fn read_reply(&mut self) -> std::io::Result<(Header, Vec<u8>)> {
        let mut h = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut h)?;
        let h = Header::decode(&h, 1 << 30)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut b = vec![0u8; h.pkg_len as usize];
        self.stream.read_exact(&mut b)?;
        Ok((h, b))
    }

    /// Request and reply; returns (status, body).
    pub fn call(&mut self, cmd: u8, body: &[u8]) -> std::io::Result<(u8, Vec<u8>)> {
        self.send(cmd, body)?;
        let (h, b) = self.read_reply()?;
        if h.cmd != fdfs_proto::cmd::RESP {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("reply cmd {} is not 100", h.cmd),
            ));
        }
        Ok((h.status, b))
    }

    /// True if the server closes the connection (EOF or reset) within
    /// `within`; false if it stays open and silent (or sends data).
    pub fn closed_by_peer(&mut self, within: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(within));
        let mut b = [0u8; 64];
        let r = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ),
        };
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(5)));
        r
    }
}
