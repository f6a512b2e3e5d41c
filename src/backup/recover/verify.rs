//! The check after a restore: every restored entry against the archive, content included
//! (rsync's checksums computed on both sides, in a dry run over the same paths, excludes and
//! deletions as the pull), read from each pull's `--verify` result into counts and the
//! differences named by destination path.

use super::pull::VerifyResult;

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Regular files compared.
    pub files: u64,
    /// All differences; `differences` holds the first ones (20 per restored item).
    pub differ: u64,
    pub differences: Vec<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.differ == 0
    }
}

/// The check's outcome from the `--verify` results of each restored item, in order with the
/// items' (destination, is a directory): files compared, and each difference as
/// `DEST_PATH: WHAT` (WHAT: missing on the destination, not in the archive, or which of
/// content, size, mode, owner... differ).
pub fn verified<'a>(
    results: &[VerifyResult],
    dests: impl Iterator<Item = (&'a str, bool)>,
) -> Verified {
    let mut v = Verified::default();
    for (r, (dest, is_dir)) in results.iter().zip(dests) {
        v.files += r.files;
        v.differ += r.differ;
        for line in &r.sample {
            let (what, rel) = line.split_once(' ').unwrap_or((line, ""));
            let path = match (is_dir, rel.trim_end_matches('/')) {
                (true, "." | "") => dest.to_string(),
                (true, rel) => format!("{}/{rel}", dest.trim_end_matches('/')),
                (false, _) => dest.to_string(),
            };
            let what = match what {
                "missing" => "missing on the destination".to_string(),
                "extra" => "not in the archive".to_string(),
                w if w.contains(',') => format!("{} differ", w.replace(',', ", ")),
                w => format!("{w} differs"),
            };
            v.differences.push(format!("{path}: {what}"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::{verified, VerifyResult};

    fn r(files: u64, differ: u64, sample: &[&str]) -> VerifyResult {
        serde_json::from_value(serde_json::json!({
            "verified": differ == 0, "files": files, "entries": files, "differ": differ,
            "sample": sample,
        }))
        .unwrap()
    }

    #[test]
    fn verify_results_become_counts_and_destination_paths() {
        let results = [r(3, 0, &[]), r(1, 0, &[])];
        let v = verified(
            &results,
            [("/srv/data", true), ("/tmp/x.conf", false)].into_iter(),
        );
        assert_eq!((v.files, v.differ, v.differences.len()), (4, 0, 0));
        assert!(v.ok());

        let results = [
            r(
                5,
                25,
                &[
                    "missing a/b.txt",
                    "extra old.log",
                    "content d/c.bin",
                    "content,mode,owner e",
                    "mode ./",
                ],
            ),
            r(1, 1, &["content app.conf"]),
        ];
        let v = verified(
            &results,
            [("/srv/data/", true), ("/tmp/x.conf", false)].into_iter(),
        );
        assert_eq!((v.files, v.differ), (6, 26));
        assert!(!v.ok());
        assert_eq!(
            v.differences,
            [
                "/srv/data/a/b.txt: missing on the destination",
                "/srv/data/old.log: not in the archive",
                "/srv/data/d/c.bin: content differs",
                "/srv/data/e: content, mode, owner differ",
                "/srv/data/: mode differs",
                "/tmp/x.conf: content differs",
            ]
        );
    }
}
