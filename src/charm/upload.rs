//! Keeps a host's charm store equal to the embedded charms: asks the host for a manifest
//! (mode and sha256 of every file), then sends only the files that differ and removes the
//! ones no longer shipped, over the host's existing master connection.
//!
//! Two ways to send files were measured (docs/benchmarks.md): one tar stream into a single
//! remote command (the default), and SFTP over the same master. The tar stream wins: one
//! round trip whatever the number of files.

use super::{sha256_hex, EmbeddedFile, STORE};
use crate::fleet::{HostCtx, StepFailure};
use crate::playbook;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMethod {
    Tar,
    Sftp,
}

impl UploadMethod {
    /// `ZEROKM_UPLOAD=sftp` selects SFTP, for the benchmark that compares the two.
    pub fn from_env() -> Self {
        match std::env::var("ZEROKM_UPLOAD").as_deref() {
            Ok("sftp") => UploadMethod::Sftp,
            _ => UploadMethod::Tar,
        }
    }
}

/// What a sync did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SyncReport {
    pub uploaded: Vec<String>,
    pub removed: Vec<String>,
}

impl SyncReport {
    pub fn changed(&self) -> bool {
        !self.uploaded.is_empty() || !self.removed.is_empty()
    }
}

/// Brings the listed charms in the host's store up to date.
pub async fn sync_store(
    ctx: &HostCtx,
    charms: &[&str],
    method: UploadMethod,
) -> Result<SyncReport, StepFailure> {
    let pb = &playbook::CHARM_STORE_MANIFEST;
    let out = ctx
        .step(
            "charms: compare",
            &pb.command_line(&[STORE]),
            Some(pb.script.as_bytes()),
        )
        .await?;
    let remote = parse_manifest(&out.stdout);
    let local: Vec<&EmbeddedFile> = charms.iter().flat_map(|c| super::files(c)).collect();
    let upload: Vec<&EmbeddedFile> = local
        .iter()
        .copied()
        .filter(|f| {
            remote
                .get(f.path)
                .is_none_or(|(mode, sha)| *mode != f.mode || *sha != sha256_hex(f.data))
        })
        .collect();
    let remove: Vec<String> = remote
        .keys()
        .filter(|p| {
            charms.iter().any(|c| p.starts_with(&format!("{c}/")))
                && !local.iter().any(|f| f.path == p.as_str())
        })
        .cloned()
        .collect();
    let report = SyncReport {
        uploaded: upload.iter().map(|f| f.path.to_string()).collect(),
        removed: remove.clone(),
    };
    if !report.changed() {
        return Ok(report);
    }
    match method {
        // SFTP writes as the login: a login that acts as root through sudo sends a tar.
        UploadMethod::Sftp if !ctx.conn.sudo() => send_sftp(ctx, &upload, &remove).await?,
        _ => send_tar(ctx, &upload, &remove).await?,
    }
    Ok(report)
}

/// `file MODE SHA PATH` lines -> path -> (mode, sha).
fn parse_manifest(stdout: &[u8]) -> BTreeMap<String, (u32, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            (parts.next()? == "file").then_some(())?;
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            let sha = parts.next()?.to_string();
            Some((parts.next()?.to_string(), (mode, sha)))
        })
        .collect()
}

async fn send_tar(
    ctx: &HostCtx,
    files: &[&EmbeddedFile],
    remove: &[String],
) -> Result<(), StepFailure> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(f.data.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        builder
            .append_data(&mut header, f.path, f.data)
            .map_err(|e| {
                StepFailure::new("charms: upload", format!("cannot build the archive: {e}"))
            })?;
    }
    let archive = builder.into_inner().map_err(|e| {
        StepFailure::new("charms: upload", format!("cannot build the archive: {e}"))
    })?;
    let pb = &playbook::CHARM_STORE_APPLY;
    let mut args = vec![STORE];
    args.extend(remove.iter().map(String::as_str));
    ctx.step(
        "charms: upload",
        &pb.command_line_inline(&args),
        Some(&archive),
    )
    .await?;
    Ok(())
}

async fn send_sftp(
    ctx: &HostCtx,
    files: &[&EmbeddedFile],
    remove: &[String],
) -> Result<(), StepFailure> {
    let list: Vec<(String, &[u8], u32)> = files
        .iter()
        .map(|f| (format!("{STORE}/{}", f.path), f.data, f.mode))
        .collect();
    // Directories first (sftp has no mkdir -p), then the files, each written to a temporary
    // name and renamed into place.
    let mut dirs: Vec<String> = list
        .iter()
        .filter_map(|(p, _, _)| p.rsplit_once('/').map(|(d, _)| d.to_string()))
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut mkdir = vec!["mkdir".to_string(), "-p".to_string(), "--".to_string()];
    mkdir.extend(dirs);
    ctx.step("charms: upload", &crate::ssh::quote_join(&mkdir), None)
        .await?;
    ctx.conn
        .upload_sftp(&list)
        .await
        .map_err(|e| StepFailure::new("charms: upload", e))?;
    if !remove.is_empty() {
        let mut rm = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
        rm.extend(remove.iter().map(|p| format!("{STORE}/{p}")));
        ctx.step("charms: upload", &crate::ssh::quote_join(&rm), None)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_lines_are_parsed() {
        let m = super::parse_manifest(
            b"file 755 abc base/hooks/install.d/10 x.sh\nnoise\nfile 644 def base/metadata.yml\n0km-result {}\n",
        );
        assert_eq!(
            m["base/hooks/install.d/10 x.sh"],
            (0o755, "abc".to_string())
        );
        assert_eq!(m["base/metadata.yml"], (0o644, "def".to_string()));
        assert_eq!(m.len(), 2);
    }
}
