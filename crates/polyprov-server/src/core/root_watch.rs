//! What the boot root holds, known without asking the disk on every request.
//!
//! Phones ask for many files a boot root does not have (`<mac>.cfg`, `<mac>-license.cfg`, a
//! directory seed — per-MAC names in two cases), and each was a `stat`; for a MAC the server had
//! not met, that `stat` missed the kernel's name cache and searched the directory on disk. In a
//! storm of new phones the boot root's `stat`s were ~8% of the server's CPU (perf, `bench/storm.sh`).
//!
//! So each directory of the root that requests reach is listed once and watched with inotify,
//! and a lookup first takes every change the kernel has queued (one non-blocking `read`): the
//! kernel queues the event inside the `write`, `rename`, `unlink` or `close` that made the
//! change, so a change finished before a request arrives is seen by it — never stale, as with a
//! `stat` per request. A listed file is `stat`ed once, then again only after an event names it.
//!
//! Still a `stat` per request, as before: a folder on a file system other machines change
//! unseen by this kernel (only ext2/3/4, XFS, btrfs, tmpfs and F2FS are watched — not NFS, SMB,
//! FUSE or overlay; checked for the root and for each folder listed, which may be a share
//! mounted there), anything reached through a symlink, a file with other hard links (changed
//! under another name, no event reaches the root's watch), a directory of more than
//! [`MAX_LISTED`] entries, and everything when inotify is unavailable (its limits) or
//! `[boot_root] watch_changes = false`. The root's own path is watched too (each parent, for the
//! next name on the path): moving, replacing or re-pointing it (a symlink swap) starts over.
//! Writes through a shared `mmap` raise no event until the file is closed, and a file system
//! mounted over a folder of the root while the server runs raises none at all (the kernel does
//! not report mounts to inotify): mount first, or turn the watch off.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags as Ev, InitFlags, Inotify, WatchDescriptor};

use super::render_cache::Stamp;

/// Keys here are the admin's file names, not a phone's: a fast hash, seeded per process.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A directory with more entries than this is not listed (its lookups `stat`).
pub(super) const MAX_LISTED: usize = 100_000;
/// Names kept over all listings (about 100 bytes each).
const MAX_NAMES: usize = 200_000;

/// A name made, removed or moved in a watched directory, or the directory itself removed or
/// moved.
const NAMES_CHANGED: Ev = Ev::IN_CREATE
    .union(Ev::IN_DELETE)
    .union(Ev::IN_MOVED_FROM)
    .union(Ev::IN_MOVED_TO)
    .union(Ev::IN_DELETE_SELF)
    .union(Ev::IN_MOVE_SELF)
    .union(Ev::IN_ONLYDIR);

/// The boot root's lookups: through the watch when there is one, else a `stat` each.
pub(super) struct RootWatch {
    root: PathBuf,
    enabled: bool,
    /// Made on first use ([`RootWatch::start`]): building a core costs nothing until the
    /// setting is known.
    watching: OnceLock<Option<Mutex<Watching>>>,
}

impl RootWatch {
    /// Watches `root` when `enabled` and its file system is one this kernel sees every change
    /// of; otherwise every lookup `stat`s. Nothing is done until [`RootWatch::start`] or the
    /// first lookup.
    pub(super) fn new(root: PathBuf, enabled: bool) -> RootWatch {
        RootWatch {
            root,
            enabled,
            watching: OnceLock::new(),
        }
    }

    /// Starts watching now (when enabled), so that start-up logs say how the root is looked
    /// up; a later call, or a lookup, reuses what this made.
    pub(super) fn start(&self) {
        self.watching();
    }

    /// The watch, made on first use.
    fn watching(&self) -> Option<&Mutex<Watching>> {
        self.watching
            .get_or_init(|| {
                if !self.enabled {
                    tracing::info!(root = %self.root.display(), "boot root: a stat per request ([boot_root] watch_changes = false)");
                    None
                } else if let Some(fs) = unwatchable_file_system(&self.root) {
                    tracing::info!(root = %self.root.display(), file_system = %fs, "boot root: a stat per request (changes on this file system may not be reported to this machine)");
                    None
                } else {
                    tracing::info!(root = %self.root.display(), "boot root: known from a watch of its changes (inotify)");
                    inotify()
                }
            })
            .as_ref()
    }

    /// Watches `root` whatever its file system.
    #[cfg(test)]
    fn inotify(root: PathBuf) -> RootWatch {
        RootWatch {
            root,
            enabled: true,
            watching: OnceLock::from(inotify()),
        }
    }

    /// Size and modification time of the regular file at `rel` under the root (`None`: there
    /// is none), as `fetch::file_stamp` would say now.
    pub(super) fn stamp(&self, rel: &Path) -> io::Result<Option<Stamp>> {
        if let Some(w) = self.watching() {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            w.take_changes();
            if let Some(known) = w.lookup(&self.root, rel) {
                return known;
            }
        }
        super::fetch::file_stamp(&self.root.join(rel))
    }

    /// Whether lookups go through a watch (false: a `stat` each).
    #[cfg(test)]
    fn is_watching(&self) -> bool {
        self.watching().is_some_and(|w| {
            let w = w.lock().unwrap_or_else(|e| e.into_inner());
            !w.off
        })
    }
}

/// A watch not yet watching anything (`None`: inotify unavailable, its limits).
fn inotify() -> Option<Mutex<Watching>> {
    match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
        Ok(inotify) => Some(Mutex::new(Watching::new(inotify))),
        Err(e) => {
            tracing::warn!(error = %e, "boot root: cannot watch for changes (inotify), a stat per request");
            None
        }
    }
}

/// The file system `root` is on, when this kernel may not see every change made to it.
fn unwatchable_file_system(root: &Path) -> Option<String> {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, F2FS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC, statfs,
    };
    match statfs(root) {
        // ext2 and ext3 share ext4's magic number.
        Ok(s) => {
            let t = s.filesystem_type();
            let local = [
                EXT4_SUPER_MAGIC,
                XFS_SUPER_MAGIC,
                BTRFS_SUPER_MAGIC,
                TMPFS_MAGIC,
                F2FS_SUPER_MAGIC,
            ];
            (!local.contains(&t)).then(|| format!("{:#x}", t.0))
        }
        Err(e) => Some(format!("unknown ({e})")),
    }
}

/// Bytes read from inotify at once: room for many events (each 16 bytes and its name).
const EVENTS_BUFFER: usize = 16 * 1024;

/// One event as the kernel queues it (`struct inotify_event`, inotify(7)).
struct Event {
    /// The watch descriptor's number (`WatchDescriptor::as_raw`).
    wd: i32,
    mask: Ev,
    name: Option<OsString>,
}

impl Event {
    /// The next event in `rest` (what one `read` returned), or `None` at its end.
    fn next(rest: &mut &[u8]) -> Option<Event> {
        const HEAD: usize = 16;
        let field = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
        let wd = i32::from_ne_bytes(field(0)?);
        let mask = u32::from_ne_bytes(field(4)?);
        let len = u32::from_ne_bytes(field(12)?) as usize;
        let name = rest.get(HEAD..HEAD + len)?;
        // The name is padded with NULs to an alignment.
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        let name = (!name.is_empty()).then(|| {
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_owned()
        });
        *rest = &rest[HEAD + len..];
        Some(Event {
            wd,
            mask: Ev::from_bits_truncate(mask),
            name,
        })
    }
}

/// What is known of one name in a listed directory.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Entry {
    /// There, not looked at since it was listed or changed.
    Unknown,
    /// A regular file with one link, as last `stat`ed.
    File(Stamp),
    /// A real directory (its own listing when a lookup goes into it).
    Dir,
    /// A symlink, a file with other links, anything else: `stat`ed on every lookup.
    Other,
}

struct Listed {
    wd: WatchDescriptor,
    /// `None`: too many entries to keep, or on a file system a watch cannot vouch for;
    /// lookups in it `stat`.
    names: Option<Map<OsString, Entry>>,
}

enum Watched {
    /// A listed directory of the root (its path relative to the root).
    Dir(PathBuf),
    /// A parent of the root, watched for the next name on the root's path.
    Parent(OsString),
}

struct Watching {
    inotify: Inotify,
    /// Where queued events are read to (kept: a fresh zeroed buffer per lookup cost more than
    /// the lookup).
    events: Vec<u8>,
    listings: Map<PathBuf, Listed>,
    /// Every watch by its number, with what it is for.
    by_wd: Map<i32, (WatchDescriptor, Watched)>,
    /// Names over all listings.
    names: usize,
    parents_watched: bool,
    /// Set when the watch cannot be trusted any more: a `stat` per lookup from then on.
    off: bool,
    /// Lookups that asked the disk (`stat`, directory read), for tests.
    disk_reads: u64,
}

impl Watching {
    fn new(inotify: Inotify) -> Watching {
        Watching {
            inotify,
            events: vec![0; EVENTS_BUFFER],
            listings: Map::default(),
            by_wd: Map::default(),
            names: 0,
            parents_watched: false,
            off: false,
            disk_reads: 0,
        }
    }

    /// Applies every change the kernel has queued.
    fn take_changes(&mut self) {
        if self.off {
            return;
        }
        let mut buf = std::mem::take(&mut self.events);
        loop {
            match nix::unistd::read(&self.inotify, &mut buf) {
                Ok(n) => {
                    let mut rest = &buf[..n];
                    while let Some(e) = Event::next(&mut rest) {
                        self.apply(e);
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "boot root: reading its changes failed, a stat per request from now on");
                    self.off = true;
                    break;
                }
            }
        }
        self.events = buf;
    }

    fn apply(&mut self, e: Event) {
        if e.mask.contains(Ev::IN_Q_OVERFLOW) {
            self.forget_all();
            return;
        }
        let dir = match self.by_wd.get(&e.wd).map(|(_, w)| w) {
            None => return, // a watch already dropped
            Some(Watched::Parent(next)) => {
                if e.name.as_ref().is_none_or(|n| n == next) {
                    self.forget_all();
                }
                return;
            }
            Some(Watched::Dir(d)) => d.clone(),
        };
        let Some(name) = e.name else {
            // The directory itself went, moved or changed: list it again when asked.
            self.forget_under(&dir);
            return;
        };
        let mut was = None;
        if let Some(listed) = self.listings.get_mut(&dir)
            && let Some(names) = &mut listed.names
        {
            if e.mask.intersects(Ev::IN_DELETE | Ev::IN_MOVED_FROM) {
                was = names.remove(&name);
                self.names -= usize::from(was.is_some());
            } else {
                was = names.insert(name.clone(), Entry::Unknown);
                self.names += usize::from(was.is_none());
                if names.len() > MAX_LISTED || self.names > MAX_NAMES {
                    // Grown past the caps: its lookups `stat` from now on.
                    self.names -= names.len();
                    listed.names = None;
                }
            }
        }
        if e.mask.contains(Ev::IN_ISDIR) || was == Some(Entry::Dir) {
            self.forget_under(&dir.join(&name));
        }
    }

    /// Drops the listings of `dir` and everything under it (and their watches).
    fn forget_under(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .listings
            .keys()
            .filter(|k| k.starts_with(dir))
            .cloned()
            .collect();
        for k in gone {
            if let Some(l) = self.listings.remove(&k) {
                self.names -= l.names.map_or(0, |n| n.len());
                self.by_wd.remove(&l.wd.as_raw());
                let _ = self.inotify.rm_watch(l.wd);
            }
        }
    }

    fn forget_all(&mut self) {
        for (wd, _) in self.by_wd.values() {
            let _ = self.inotify.rm_watch(*wd);
        }
        self.by_wd.clear();
        self.listings.clear();
        self.names = 0;
        self.parents_watched = false;
    }

    /// Watches each parent of the root for the next name on its path.
    fn watch_parents(&mut self, root: &Path) -> bool {
        let Ok(abs) = std::path::absolute(root) else {
            return false;
        };
        let mut child = abs.as_path();
        while let (Some(parent), Some(name)) = (child.parent(), child.file_name()) {
            match self.inotify.add_watch(parent, NAMES_CHANGED) {
                Ok(wd) => {
                    self.by_wd
                        .insert(wd.as_raw(), (wd, Watched::Parent(name.to_owned())));
                }
                Err(e) => {
                    tracing::warn!(dir = %parent.display(), error = %e, "boot root: cannot watch its path, a stat per request");
                    self.off = true;
                    return false;
                }
            }
            child = parent;
        }
        self.parents_watched = true;
        true
    }

    /// Lists (and watches) `dir`; nothing is recorded when it cannot be.
    fn list(&mut self, root: &Path, dir: &Path) {
        let full = root.join(dir);
        // A file's contents or times changed (a `touch` sets both times: `IN_ATTRIB`), or a
        // shared `mmap` written and closed.
        let mut mask = NAMES_CHANGED | Ev::IN_MODIFY | Ev::IN_ATTRIB | Ev::IN_CLOSE_WRITE;
        // The root may be a symlink (its parents' watches see it re-pointed); below it, a
        // symlinked directory is never listed.
        if !dir.as_os_str().is_empty() {
            mask |= Ev::IN_DONT_FOLLOW;
        }
        let Ok(wd) = self.inotify.add_watch(&full, mask) else {
            return;
        };
        self.disk_reads += 1;
        let mut names = Map::default();
        let complete = (|| {
            // A folder may be another file system mounted in the root (an NFS share for the
            // firmware): its lookups `stat` unless that one is watchable too.
            if self.names >= MAX_NAMES || unwatchable_file_system(&full).is_some() {
                return Ok(false);
            }
            for e in std::fs::read_dir(&full)? {
                let e = e?;
                if names.len() >= MAX_LISTED || self.names + names.len() >= MAX_NAMES {
                    return Ok::<bool, io::Error>(false);
                }
                let kind = match e.file_type()? {
                    t if t.is_dir() => Entry::Dir,
                    t if t.is_file() => Entry::Unknown,
                    _ => Entry::Other,
                };
                names.insert(e.file_name(), kind);
            }
            Ok(true)
        })();
        let names = match complete {
            Ok(true) => Some(names),
            Ok(false) => None,
            Err(_) => {
                let _ = self.inotify.rm_watch(wd);
                return;
            }
        };
        self.names += names.as_ref().map_or(0, |n| n.len());
        self.by_wd
            .insert(wd.as_raw(), (wd, Watched::Dir(dir.to_path_buf())));
        self.listings
            .insert(dir.to_path_buf(), Listed { wd, names });
    }

    /// The answer for `rel` when the watch knows it; `None`: `stat` it.
    fn lookup(&mut self, root: &Path, rel: &Path) -> Option<io::Result<Option<Stamp>>> {
        if self.off || (!self.parents_watched && !self.watch_parents(root)) {
            return None;
        }
        let mut dir = PathBuf::new();
        let mut parts = rel.components().peekable();
        while let Some(part) = parts.next() {
            let Component::Normal(name) = part else {
                return None;
            };
            let found = match self.listings.get(&dir) {
                Some(l) => l.names.as_ref()?.get(name).copied(),
                None => {
                    self.list(root, &dir);
                    self.listings.get(&dir)?.names.as_ref()?.get(name).copied()
                }
            };
            let entry = match found {
                None => return Some(Ok(None)),
                Some(Entry::Unknown) => self.look_at(root, &dir, name)?,
                Some(known) => known,
            };
            let last = parts.peek().is_none();
            match entry {
                Entry::File(stamp) if last => return Some(Ok(Some(stamp))),
                // As a `stat` says: a directory is no file, a file has nothing under it.
                Entry::Dir if last => return Some(Ok(None)),
                Entry::File(_) | Entry::Unknown => return Some(Ok(None)),
                Entry::Dir => dir.push(name),
                Entry::Other => return None,
            }
        }
        None
    }

    /// `lstat`s a name whose entry is unknown and records what it is (`Unknown`: it is gone).
    fn look_at(&mut self, root: &Path, dir: &Path, name: &std::ffi::OsStr) -> Option<Entry> {
        use std::os::unix::fs::MetadataExt;
        self.disk_reads += 1;
        let entry = match std::fs::symlink_metadata(root.join(dir).join(name)) {
            Ok(md) if md.is_file() && md.nlink() == 1 => Entry::File(super::fetch::stamp_of(&md)),
            Ok(md) if md.is_dir() => Entry::Dir,
            Ok(_) => Entry::Other,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Entry::Unknown,
            Err(_) => return None,
        };
        let names = self.listings.get_mut(dir)?.names.as_mut()?;
        if entry == Entry::Unknown {
            names.remove(name);
            self.names -= 1;
        } else {
            names.insert(name.to_owned(), entry);
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;

    /// A watch on `dir` whatever the file system the tests run on (the kernel reports local
    /// changes on any).
    fn watch(dir: &Path) -> RootWatch {
        let w = RootWatch::inotify(dir.to_path_buf());
        assert!(w.is_watching());
        w
    }

    fn disk_reads(w: &RootWatch) -> u64 {
        w.watching().unwrap().lock().unwrap().disk_reads
    }

    /// What a `stat` says now, for comparison.
    fn direct(root: &Path, rel: &str) -> Option<Stamp> {
        super::super::fetch::file_stamp(&root.join(rel)).unwrap()
    }

    #[test]
    fn names_the_root_lacks_are_answered_without_the_disk() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("site.cfg"), "x").unwrap();
        let w = watch(d.path());
        assert_eq!(
            w.stamp(Path::new("site.cfg")).unwrap(),
            direct(d.path(), "site.cfg")
        );
        let before = disk_reads(&w);
        for i in 0..100 {
            let name = format!("0004f2{i:06x}.cfg");
            assert_eq!(w.stamp(Path::new(&name)).unwrap(), None);
        }
        assert!(w.stamp(Path::new("site.cfg")).unwrap().is_some());
        assert_eq!(disk_reads(&w), before, "a listed root answers from memory");
    }

    #[test]
    fn every_change_is_seen_by_the_next_lookup() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let w = watch(root);
        let look = |rel: &str| {
            let got = w.stamp(Path::new(rel)).unwrap();
            assert_eq!(got, direct(root, rel), "{rel}");
            got
        };
        assert_eq!(look("a.cfg"), None);
        fs::write(root.join("a.cfg"), "one").unwrap();
        let first = look("a.cfg").unwrap();
        // Same size, a new time: only the event can tell.
        fs::write(root.join("a.cfg"), "two").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(root.join("a.cfg"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_ne!(look("a.cfg").unwrap(), first);
        // Replaced by a rename, as editors and deploy tools do.
        fs::write(root.join(".a.tmp"), "three!").unwrap();
        fs::rename(root.join(".a.tmp"), root.join("a.cfg")).unwrap();
        assert_eq!(look("a.cfg").unwrap().0, 6);
        fs::remove_file(root.join("a.cfg")).unwrap();
        assert_eq!(look("a.cfg"), None);
        // Directories: made, filled, renamed away, replaced by a file.
        assert_eq!(look("fw/sip.ld"), None);
        fs::create_dir(root.join("fw")).unwrap();
        fs::write(root.join("fw/sip.ld"), "image").unwrap();
        assert!(look("fw/sip.ld").is_some());
        fs::rename(root.join("fw"), root.join("old")).unwrap();
        assert_eq!(look("fw/sip.ld"), None);
        assert!(look("old/sip.ld").is_some());
        fs::write(root.join("old/sip.ld"), "image 2").unwrap();
        assert_eq!(look("old/sip.ld").unwrap().0, 7);
        fs::remove_dir_all(root.join("old")).unwrap();
        fs::write(root.join("old"), "a file now").unwrap();
        assert_eq!(look("old/sip.ld"), None);
        assert_eq!(look("old"), direct(root, "old"));
    }

    #[test]
    fn links_are_looked_at_on_every_request() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(outside.path().join("fw-1.ld"), "1").unwrap();
        std::os::unix::fs::symlink(outside.path().join("fw-1.ld"), root.join("sip.ld")).unwrap();
        fs::write(outside.path().join("hard"), "1").unwrap();
        fs::hard_link(outside.path().join("hard"), root.join("hard.cfg")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("linked")).unwrap();
        let w = watch(&root);
        for rel in ["sip.ld", "hard.cfg", "linked/hard"] {
            assert!(w.stamp(Path::new(rel)).unwrap().is_some());
        }
        // Changed outside the root, where its watch sees nothing.
        fs::write(outside.path().join("fw-1.ld"), "22").unwrap();
        fs::write(outside.path().join("hard"), "333").unwrap();
        assert_eq!(w.stamp(Path::new("sip.ld")).unwrap().unwrap().0, 2);
        assert_eq!(w.stamp(Path::new("hard.cfg")).unwrap().unwrap().0, 3);
        assert_eq!(w.stamp(Path::new("linked/hard")).unwrap().unwrap().0, 3);
    }

    #[test]
    fn a_root_re_pointed_by_a_symlink_swap_is_seen() {
        let d = tempfile::tempdir().unwrap();
        for (release, body) in [("v1", "one"), ("v2", "two!")] {
            fs::create_dir(d.path().join(release)).unwrap();
            fs::write(d.path().join(release).join("site.cfg"), body).unwrap();
        }
        let root = d.path().join("current");
        std::os::unix::fs::symlink("v1", &root).unwrap();
        let w = watch(&root);
        assert_eq!(w.stamp(Path::new("site.cfg")).unwrap().unwrap().0, 3);
        std::os::unix::fs::symlink("v2", d.path().join("next")).unwrap();
        fs::rename(d.path().join("next"), &root).unwrap();
        assert_eq!(w.stamp(Path::new("site.cfg")).unwrap().unwrap().0, 4);
        // And the root moved away and made again.
        fs::remove_file(&root).unwrap();
        fs::create_dir(&root).unwrap();
        assert_eq!(w.stamp(Path::new("site.cfg")).unwrap(), None);
    }

    #[test]
    fn a_directory_too_large_to_list_is_looked_up_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let w = watch(d.path());
        let mut g = w.watching().unwrap().lock().unwrap();
        g.names = MAX_NAMES; // as if other listings held every name allowed
        drop(g);
        assert_eq!(w.stamp(Path::new("a.cfg")).unwrap(), None);
        fs::write(d.path().join("a.cfg"), "x").unwrap();
        assert!(w.stamp(Path::new("a.cfg")).unwrap().is_some());
    }

    #[test]
    fn file_systems_changed_behind_the_kernels_back_are_not_watched() {
        assert!(unwatchable_file_system(Path::new("/proc")).is_some());
        assert!(unwatchable_file_system(Path::new("/no/such/dir")).is_some());
    }

    #[test]
    fn a_folder_on_a_file_system_it_cannot_vouch_for_is_looked_up_on_disk() {
        // As if /proc were a folder of the root: listed, it would say what procfs held once.
        let w = watch(Path::new("/proc"));
        assert_eq!(
            w.stamp(Path::new("version")).unwrap(),
            direct(Path::new("/proc"), "version")
        );
        let g = w.watching().unwrap().lock().unwrap();
        assert!(g.listings[Path::new("")].names.is_none());
    }

    #[test]
    fn switched_off_every_lookup_stats() {
        let d = tempfile::tempdir().unwrap();
        let w = RootWatch::new(d.path().to_path_buf(), false);
        assert!(!w.is_watching());
        assert_eq!(w.stamp(Path::new("a.cfg")).unwrap(), None);
        fs::write(d.path().join("a.cfg"), "x").unwrap();
        assert!(w.stamp(Path::new("a.cfg")).unwrap().is_some());
    }

    /// A file-system operation of the property test, on a small set of names so that
    /// operations meet.
    #[derive(Debug, Clone)]
    enum Op {
        Write(usize, usize),
        Touch(usize, u64),
        Remove(usize),
        Rename(usize, usize),
        MakeDir(usize),
    }

    const NAMES: [&str; 7] = [
        "a.cfg",
        "b.cfg",
        "d",
        "d/a.cfg",
        "d/e/b.cfg",
        "f",
        "f/a.cfg",
    ];

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let n = 0..NAMES.len();
        prop_oneof![
            (n.clone(), 0..4usize).prop_map(|(i, len)| Op::Write(i, len)),
            (n.clone(), 1..1000u64).prop_map(|(i, s)| Op::Touch(i, s)),
            n.clone().prop_map(Op::Remove),
            (n.clone(), n.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
            n.prop_map(Op::MakeDir),
        ]
    }

    #[test]
    fn events_are_read_as_the_kernel_lays_them_out() {
        let mut bytes = Vec::new();
        for (wd, mask, name) in [(1i32, 0x100u32, &b"a.cfg"[..]), (2, 0x400, b"")] {
            let padded = if name.is_empty() { 0 } else { 16 };
            bytes.extend(wd.to_ne_bytes());
            bytes.extend(mask.to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes.extend((padded as u32).to_ne_bytes());
            bytes.extend(name);
            bytes.extend(vec![0u8; padded - name.len()]);
        }
        let mut rest = &bytes[..];
        let a = Event::next(&mut rest).unwrap();
        assert_eq!(
            (a.wd, a.mask, a.name.as_deref()),
            (1, Ev::IN_CREATE, Some("a.cfg".as_ref()))
        );
        let b = Event::next(&mut rest).unwrap();
        assert_eq!((b.wd, b.mask, b.name), (2, Ev::IN_DELETE_SELF, None));
        assert!(Event::next(&mut rest).is_none());
    }

    proptest::proptest! {
        /// Whatever the bytes, reading events ends and never panics.
        #[test]
        fn any_bytes_read_as_events_end(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut rest = &bytes[..];
            let mut n = 0;
            while Event::next(&mut rest).is_some() {
                n += 1;
            }
            proptest::prop_assert!(n <= bytes.len() / 16);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever happens to the root between two requests, the watch answers as a `stat`.
        #[test]
        fn the_watch_answers_as_a_stat_would(ops in proptest::collection::vec(op(), 1..40)) {
            let d = tempfile::tempdir().unwrap();
            let root = d.path();
            let w = watch(root);
            for op in ops {
                let p = |i: usize| root.join(NAMES[i]);
                // Operations that do not apply (no such file, a directory in the way) fail
                // and change nothing, as they would for an admin.
                let _ = match op {
                    Op::Write(i, len) => fs::write(p(i), "x".repeat(len)),
                    // As `touch -d` does: both times set, on a file opened to read — only the
                    // change of attributes tells.
                    Op::Touch(i, s) => fs::File::open(p(i)).and_then(|f| {
                        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
                        f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                    }),
                    Op::Remove(i) => fs::remove_file(p(i)).or_else(|_| fs::remove_dir_all(p(i))),
                    Op::Rename(a, b) => fs::rename(p(a), p(b)),
                    Op::MakeDir(i) => fs::create_dir(p(i)),
                };
                for rel in NAMES.iter().chain(&["d/e", "x.cfg", "a.cfg/x"]) {
                    proptest::prop_assert_eq!(w.stamp(Path::new(rel)).unwrap(), direct(root, rel), "{}", rel);
                }
            }
        }
    }
}
