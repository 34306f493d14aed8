//! Tracker queries (PROTOCOL.md §3): where to store, where to fetch, and
//! the list/admin commands used by monitors.

use std::net::SocketAddr;

use fdfs_proto::cmd::{self, tracker as t};
use fdfs_proto::errno;
use fdfs_proto::tracker::{
    DeleteStorageReq, FetchResp, GroupReq, GroupStat, GroupStatV610, ListStorageReq, StorageStat,
    StoreAllResp, StoreResp,
};
use fdfs_proto::{FileId, GroupName};

use crate::{
    decode_err, file_req_body, parse_group, parse_id, storage_addr, Client, Error, Result,
};

/// Where to upload one file (reply to 101/104).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTarget {
    pub group: GroupName,
    pub server: SocketAddr,
    /// Pass unchanged in the upload request.
    pub store_path_index: u8,
}

/// Every writable server of the chosen group (reply to 106/107).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTargets {
    pub group: GroupName,
    pub servers: Vec<SocketAddr>,
    pub store_path_index: u8,
}

impl Client {
    /// Asks a tracker where to upload (101, or 104 when a group is given).
    pub async fn query_store(&self, group: Option<&str>) -> Result<StoreTarget> {
        let code = match group {
            None => t::QUERY_STORE_WITHOUT_GROUP_ONE,
            Some(_) => t::QUERY_STORE_WITH_GROUP_ONE,
        };
        let (tracker, reply) = self.tracker_call(code, &group_body(group)?).await?;
        let r = StoreResp::decode(&reply).map_err(decode_err(code, tracker))?;
        Ok(StoreTarget {
            server: storage_addr(code, tracker, &r.server)?,
            group: r.group,
            store_path_index: r.store_path_index,
        })
    }

    /// Asks a tracker for every writable server (106, or 107 with a group).
    pub async fn query_store_all(&self, group: Option<&str>) -> Result<StoreTargets> {
        let code = match group {
            None => t::QUERY_STORE_WITHOUT_GROUP_ALL,
            Some(_) => t::QUERY_STORE_WITH_GROUP_ALL,
        };
        let (tracker, reply) = self.tracker_call(code, &group_body(group)?).await?;
        let r = StoreAllResp::decode(&reply).map_err(decode_err(code, tracker))?;
        let servers = r
            .servers
            .iter()
            .map(|s| storage_addr(code, tracker, s))
            .collect::<Result<Vec<_>>>()?;
        Ok(StoreTargets {
            group: r.group,
            servers,
            store_path_index: r.store_path_index,
        })
    }

    async fn query_file(&self, code: u8, id: &FileId) -> Result<Vec<SocketAddr>> {
        let (tracker, reply) = self.tracker_call(code, &file_req_body(id)).await?;
        let r = FetchResp::decode(&reply).map_err(decode_err(code, tracker))?;
        if r.servers.is_empty() {
            return Err(Error::Protocol {
                op: cmd::name(code),
                server: tracker,
                source: fdfs_proto::DecodeError::BadLength {
                    what: "fetch reply",
                    got: reply.len(),
                    expected: "at least one server".into(),
                },
            });
        }
        r.servers
            .iter()
            .map(|s| storage_addr(code, tracker, s))
            .collect()
    }

    /// A storage that can serve `file_id` (102).
    pub async fn query_fetch(&self, file_id: &str) -> Result<SocketAddr> {
        let id = parse_id(file_id)?;
        self.query_fetch_id(&id).await
    }

    pub(crate) async fn query_fetch_id(&self, id: &FileId) -> Result<SocketAddr> {
        let v = self.query_file(t::QUERY_FETCH_ONE, id).await?;
        Ok(v[0])
    }

    /// Every storage that can serve `file_id` (105).
    pub async fn query_fetch_all(&self, file_id: &str) -> Result<Vec<SocketAddr>> {
        let id = parse_id(file_id)?;
        self.query_file(t::QUERY_FETCH_ALL, &id).await
    }

    /// The storage to send a change of `file_id` to (103): delete,
    /// metadata, append, modify, truncate, regenerate, slave upload.
    pub async fn query_update(&self, file_id: &str) -> Result<SocketAddr> {
        let id = parse_id(file_id)?;
        self.query_update_id(&id).await
    }

    pub(crate) async fn query_update_id(&self, id: &FileId) -> Result<SocketAddr> {
        let v = self.query_file(t::QUERY_UPDATE, id).await?;
        Ok(v[0])
    }

    /// Statistics of every group (91). Both record layouts are read (the
    /// current 113-byte one and the 105-byte one of V6.12-and-older
    /// trackers, or ours with `stat_layout = 6.10`), told apart by length.
    pub async fn list_groups(&self) -> Result<Vec<GroupStat>> {
        let code = t::SERVER_LIST_ALL_GROUPS;
        let (tracker, reply) = self.tracker_call(code, &[]).await?;
        GroupStat::decode_list_any(&reply).map_err(decode_err(code, tracker))
    }

    /// Statistics of one group (90), in either layout as for 91.
    pub async fn list_group(&self, group: &str) -> Result<GroupStat> {
        let code = t::SERVER_LIST_ONE_GROUP;
        let (tracker, reply) = self.tracker_call(code, &group_body(Some(group))?).await?;
        let mut v = GroupStat::decode_list_any(&reply).map_err(decode_err(code, tracker))?;
        if v.len() != 1 {
            return Err(Error::Protocol {
                op: cmd::name(code),
                server: tracker,
                source: fdfs_proto::DecodeError::BadLength {
                    what: "group stat",
                    got: reply.len(),
                    expected: format!("{} or {}", GroupStat::LEN, GroupStatV610::LEN),
                },
            });
        }
        Ok(v.remove(0))
    }

    /// The storages of a group, or one of them by id (92). Both record
    /// layouts are read (487/517 bytes, or the 612 bytes of V6.10-and-older
    /// trackers and ours with `stat_layout = 6.10`), told apart by length.
    pub async fn list_storages(
        &self,
        group: &str,
        storage_id: Option<&str>,
    ) -> Result<Vec<StorageStat>> {
        let code = t::SERVER_LIST_STORAGE;
        let req = ListStorageReq {
            group: parse_group(group)?,
            storage_id: storage_id.map(check_storage_id).transpose()?,
        };
        let mut body = Vec::new();
        req.encode(&mut body);
        let (tracker, reply) = self.tracker_call(code, &body).await?;
        StorageStat::decode_list_any(&reply).map_err(decode_err(code, tracker))
    }

    /// Removes a storage from a group (93), on every tracker as upstream
    /// clients do. Succeeds when at least one tracker deleted it and the
    /// others either did too, did not know it (ENOENT), had already deleted
    /// it (EALREADY) or could not be reached.
    pub async fn delete_storage(&self, group: &str, storage_id: &str) -> Result<()> {
        let req = DeleteStorageReq {
            group: parse_group(group)?,
            storage_id: check_storage_id(storage_id)?,
        };
        let mut body = Vec::new();
        req.encode(&mut body);
        let mut done = false;
        let mut soft: Option<Error> = None;
        let mut hard: Option<Error> = None;
        for &tracker in &self.inner.trackers {
            match self
                .call(tracker, t::SERVER_DELETE_STORAGE, 0, &body, false)
                .await
            {
                Ok(_) => done = true,
                Err(e)
                    if matches!(e.errno(), Some(errno::ENOENT) | Some(errno::EALREADY))
                        || e.is_network() =>
                {
                    tracing::debug!(%tracker, error = %e, "delete storage");
                    soft.get_or_insert(e);
                }
                Err(e) => {
                    hard.get_or_insert(e);
                }
            }
        }
        match (hard, done, soft) {
            (Some(e), _, _) => Err(e),
            (None, true, _) => Ok(()),
            (None, false, Some(e)) => Err(e),
            (None, false, None) => unreachable!("at least one tracker"),
        }
    }

    /// Makes `storage_id` (or, with `None`, the current or a newly elected
    /// server) the group's trunk server (94) on every tracker; the id of
    /// the trunk server the first tracker that agreed names.
    pub async fn set_trunk_server(&self, group: &str, storage_id: Option<&str>) -> Result<String> {
        let mut body = Vec::new();
        GroupReq {
            group: parse_group(group)?,
        }
        .encode(&mut body);
        if let Some(id) = storage_id {
            body.extend_from_slice(check_storage_id(id)?.as_bytes());
        }
        let mut named = None;
        let mut first_err = None;
        for &tracker in &self.inner.trackers {
            match self
                .call(tracker, t::SERVER_SET_TRUNK_SERVER, 0, &body, false)
                .await
            {
                Ok(reply) => {
                    let id = String::from_utf8_lossy(&reply)
                        .trim_end_matches('\0')
                        .to_owned();
                    named.get_or_insert(id);
                }
                Err(e) => {
                    tracing::debug!(%tracker, error = %e, "set trunk server");
                    first_err.get_or_insert(e);
                }
            }
        }
        match (named, first_err) {
            (Some(id), _) => Ok(id),
            (None, Some(e)) => Err(e),
            (None, None) => unreachable!("at least one tracker"),
        }
    }
}

/// The request body naming a group (16 bytes), or none.
fn group_body(group: Option<&str>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(g) = group {
        GroupReq {
            group: parse_group(g)?,
        }
        .encode(&mut body);
    }
    Ok(body)
}

fn check_storage_id(id: &str) -> Result<String> {
    fdfs_proto::common::check_id("storage id", id)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if id.is_empty() {
        return Err(Error::InvalidArgument("storage id is empty".into()));
    }
    Ok(id.to_owned())
}
