//! Write-behind for `sync = "periodic"`: a table's writes land in an in-memory map of
//! pending key operations and reach sled when the store is drained (every flush period,
//! or at once when the map grows past a bound). The core loop then never waits on sled's
//! write path or its I/O stalls, and a key written many times between two drains (a
//! dialog's CSeq, a publication modified and removed) costs sled one write, or none.
//!
//! Reads look at the pending map first, then at the tree, so callers see their own
//! writes at once. A key created and removed between two drains leaves nothing behind
//! when the writer knew the tree lacked it (a row it just found absent, or a key built
//! on a token it just generated); other removals stay pending and cost the drain a no-op
//! remove. Queuing never reads the tree itself: on a table larger than sled's cache each
//! such look-up is a page read, and it would be on the core loop.
//!
//! A drain moves the whole map aside (still visible to readers), writes
//! it key by key, then forgets it: a reader finds a key either in the map or, after
//! the map is forgotten, in the tree, never in neither. Key-by-key writes keep sled's
//! global batch lock (which stalls every reader) out of the picture; a crash in the
//! middle of a drain can split a row from its index entries, which [`Store::repair`]
//! (run before serving) puts back together.
//!
//! [`Store::repair`]: super::Store::repair

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use sled::IVec;

/// Key operations in key order; `None` removes the key. Later operations replace earlier
/// ones, as in a sled batch.
pub(super) type Ops = BTreeMap<Vec<u8>, Option<IVec>>;

/// A pending operation.
#[derive(Clone)]
struct Op {
    value: Option<IVec>,
    /// The tree has no value for the key (once the running drain, if any, is done), so
    /// removing it needs no write at all.
    fresh: bool,
}

type Pending = BTreeMap<Vec<u8>, Op>;

fn op_size(k: &[u8], v: &Option<IVec>) -> usize {
    k.len() + v.as_ref().map_or(0, |v| v.len()) + OP_OVERHEAD
}

/// Bytes held for one pending operation besides its key and value (map node, IVec).
const OP_OVERHEAD: usize = 64;

#[derive(Default)]
pub(super) struct Overlay {
    state: Mutex<State>,
    /// One drain at a time per table.
    draining: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Written since the last drain began.
    active: Pending,
    /// Being written to the tree by the running drain; still authoritative for reads.
    flushing: Arc<Pending>,
    /// Approximate memory held by `active`.
    bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves the maps consistent at each step, so a panic
    // elsewhere cannot have left them half-changed.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Overlay {
    /// The pending state of `key`: `Some(None)` if it is pending removal, `None` if only
    /// the tree knows.
    pub fn get(&self, key: &[u8]) -> Option<Option<IVec>> {
        let st = lock(&self.state);
        st.active
            .get(key)
            .or_else(|| st.flushing.get(key))
            .map(|op| op.value.clone())
    }

    /// Queues `ops`; returns the bytes now pending. `absent(key)` says the caller knows
    /// the tree has no value for a key in neither map (callers serialise their writes to
    /// one table with its write lock, so that knowledge cannot go stale meanwhile).
    pub fn extend(&self, ops: Ops, absent: impl Fn(&[u8]) -> bool) -> usize {
        let mut guard = lock(&self.state);
        let State {
            active,
            flushing,
            bytes,
        } = &mut *guard;
        // One search of `active` per key (the core loop's writes go through here, and
        // keys share long prefixes): its entry decides, `flushing` is asked only for a
        // key `active` does not hold.
        for (k, v) in ops {
            match active.entry(k) {
                Entry::Occupied(mut e) => {
                    let fresh = e.get().fresh;
                    let old_size = op_size(e.key(), &e.get().value);
                    *bytes = bytes.saturating_sub(old_size);
                    if v.is_none() && fresh {
                        // Removing what never reached the tree: forget it instead.
                        e.remove();
                    } else {
                        *bytes += op_size(e.key(), &v);
                        e.insert(Op { value: v, fresh });
                    }
                }
                Entry::Vacant(e) => {
                    let fresh = match flushing.get(e.key()) {
                        Some(op) => op.value.is_none(),
                        None => absent(e.key()),
                    };
                    if v.is_some() || !fresh {
                        *bytes += op_size(e.key(), &v);
                        e.insert(Op { value: v, fresh });
                    }
                }
            }
        }
        *bytes
    }

    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        let st = lock(&self.state);
        st.active.is_empty() && st.flushing.is_empty()
    }

    /// The pending operations on keys starting with `prefix`, in key order (what a scan
    /// merges over the tree).
    pub fn range(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Option<IVec>)> {
        self.range_from(prefix, Bound::Included(prefix))
    }

    /// [`Overlay::range`] from `start` on (a key under `prefix`).
    pub fn range_from(&self, prefix: &[u8], start: Bound<&[u8]>) -> Vec<(Vec<u8>, Option<IVec>)> {
        let st = lock(&self.state);
        if st.active.is_empty() && st.flushing.is_empty() {
            return Vec::new();
        }
        let mut out: Ops = BTreeMap::new();
        for map in [&*st.flushing, &st.active] {
            let range = map.range::<[u8], _>((start, Bound::Unbounded));
            for (k, op) in range.take_while(|(k, _)| k.starts_with(prefix)) {
                // `active` comes second: its newer operation replaces the flushing one.
                out.insert(k.clone(), op.value.clone());
            }
        }
        out.into_iter().collect()
    }

    /// The first key under `prefix` that a pending operation writes (not removes), in
    /// key order; a key's newest operation counts.
    pub fn first_written(&self, prefix: &[u8]) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        let from = || (Bound::Included(prefix), Bound::Unbounded);
        let mut active = st.active.range::<[u8], _>(from()).peekable();
        let mut flushing = st.flushing.range::<[u8], _>(from()).peekable();
        loop {
            let (key, op) = match (active.peek(), flushing.peek()) {
                (None, None) => return None,
                (Some(_), None) => active.next()?,
                (None, Some(_)) => flushing.next()?,
                (Some((a, _)), Some((f, _))) => {
                    if a < f {
                        active.next()?
                    } else if f < a {
                        flushing.next()?
                    } else {
                        // The same key in both: the active operation is the newer one.
                        flushing.next();
                        active.next()?
                    }
                }
            };
            if !key.starts_with(prefix) {
                return None;
            }
            if op.value.is_some() {
                return Some(key.clone());
            }
        }
    }

    /// Writes every pending operation to `tree`. Returns how many were written. On an
    /// error the operations not yet superseded stay pending for the next drain.
    pub fn drain(&self, tree: &sled::Tree) -> Result<usize, sled::Error> {
        let _one = lock(&self.draining);
        let batch = {
            let mut st = lock(&self.state);
            if st.active.is_empty() {
                return Ok(0);
            }
            let taken = std::mem::take(&mut st.active);
            st.bytes = 0;
            st.flushing = Arc::new(taken);
            st.flushing.clone()
        };
        let written = write_all(tree, &batch);
        drop(batch);
        let mut st = lock(&self.state);
        let flushed = std::mem::take(&mut st.flushing);
        match written {
            Ok(()) => {
                // Freeing a flush's worth of operations takes milliseconds: not while
                // the core loop may be waiting for the lock.
                drop(st);
                Ok(flushed.len())
            }
            Err(e) => {
                let flushed = Arc::try_unwrap(flushed).unwrap_or_else(|shared| (*shared).clone());
                for (k, mut op) in flushed {
                    if !st.active.contains_key(&k) {
                        // Part of the batch may have reached the tree before the error:
                        // a later removal of this key must reach it too.
                        op.fresh = false;
                        st.bytes += op_size(&k, &op.value);
                        st.active.insert(k, op);
                    }
                }
                Err(e)
            }
        }
    }
}

fn write_all(tree: &sled::Tree, ops: &Pending) -> Result<(), sled::Error> {
    for (k, op) in ops {
        match &op.value {
            Some(v) => tree.insert(k.as_slice(), v.clone())?,
            None => tree.remove(k.as_slice())?,
        };
    }
    Ok(())
}

/// A prefix scan of the tree with the pending operations laid over it.
pub(super) struct Merged {
    tree: std::iter::Peekable<sled::Iter>,
    pending: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<IVec>)>>,
    /// Stop at the first tree key outside it (for a range that starts inside a prefix).
    prefix: Option<Vec<u8>>,
    tree_done: bool,
}

impl Merged {
    pub fn new(tree: sled::Iter, pending: Vec<(Vec<u8>, Option<IVec>)>) -> Merged {
        Merged {
            tree: tree.peekable(),
            pending: pending.into_iter().peekable(),
            prefix: None,
            tree_done: false,
        }
    }

    /// Ends the tree side at the first key not under `prefix`.
    pub fn with_prefix(mut self, prefix: Vec<u8>) -> Merged {
        self.prefix = Some(prefix);
        self
    }
}

impl Iterator for Merged {
    type Item = Result<(IVec, IVec), sled::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let (Some(prefix), Some(Ok((k, _)))) = (&self.prefix, self.tree.peek())
                && !k.starts_with(prefix)
            {
                // Past the prefix: the tree side is done.
                self.tree_done = true;
            }
            let tree = if self.tree_done {
                None
            } else {
                self.tree.peek()
            };
            let take_pending = match (tree, self.pending.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.tree.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((tk, _))), Some((pk, _))) => {
                    if tk.as_ref() == pk.as_slice() {
                        // The pending operation is newer than the tree's value.
                        self.tree.next();
                        true
                    } else {
                        pk.as_slice() < tk.as_ref()
                    }
                }
            };
            if !take_pending {
                return if self.tree_done {
                    None
                } else {
                    self.tree.next()
                };
            }
            match self.pending.next() {
                Some((k, Some(v))) => return Some(Ok((IVec::from(k), v))),
                // Pending removal: hidden.
                Some((_, None)) => continue,
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("t").unwrap();
        (db, t)
    }

    fn ops(list: &[(&str, Option<&str>)]) -> Ops {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| IVec::from(v.as_bytes()))))
            .collect()
    }

    /// What a writer that looked the key up in the tree knows.
    fn looked_up(t: &sled::Tree) -> impl Fn(&[u8]) -> bool + '_ {
        |k| !t.contains_key(k).unwrap()
    }

    fn scan(o: &Overlay, t: &sled::Tree, prefix: &str) -> Vec<(String, String)> {
        Merged::new(t.scan_prefix(prefix), o.range(prefix.as_bytes()))
            .map(|e| {
                let (k, v) = e.unwrap();
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn pending_operations_shadow_the_tree_until_drained() {
        let (_db, t) = tree();
        t.insert("a1", "old").unwrap();
        t.insert("a2", "gone").unwrap();
        t.insert("b1", "other").unwrap();
        let o = Overlay::default();
        o.extend(
            ops(&[("a1", Some("new")), ("a2", None), ("a3", Some("added"))]),
            looked_up(&t),
        );
        assert_eq!(o.get(b"a1"), Some(Some(IVec::from("new"))));
        assert_eq!(o.get(b"a2"), Some(None));
        assert_eq!(o.get(b"b1"), None);
        let want = vec![("a1".into(), "new".into()), ("a3".into(), "added".into())];
        assert_eq!(scan(&o, &t, "a"), want);
        // The tree is untouched until the drain.
        assert_eq!(t.get("a1").unwrap(), Some(IVec::from("old")));

        assert_eq!(o.drain(&t).unwrap(), 3);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
        assert_eq!(scan(&o, &t, "a"), want);
        assert_eq!(t.get("a2").unwrap(), None);
        assert_eq!(scan(&o, &t, "b"), vec![("b1".into(), "other".into())]);
    }

    #[test]
    fn repeated_writes_to_a_key_coalesce() {
        let (_db, t) = tree();
        let o = Overlay::default();
        for i in 0..100 {
            o.extend(ops(&[("k", Some(&format!("v{i}")))]), looked_up(&t));
        }
        o.extend(ops(&[("tmp", Some("x"))]), looked_up(&t));
        o.extend(ops(&[("tmp", None)]), looked_up(&t));
        let pending = o.bytes();
        assert!(pending < 2 * (OP_OVERHEAD + 8), "{pending}");
        // A key created and removed between drains leaves nothing to write.
        assert_eq!(o.get(b"tmp"), None);
        assert_eq!(o.drain(&t).unwrap(), 1);
        assert_eq!(t.get("k").unwrap(), Some(IVec::from("v99")));
        assert_eq!(t.get("tmp").unwrap(), None);
        assert_eq!(o.drain(&t).unwrap(), 0);
    }

    #[test]
    fn removing_a_key_the_tree_holds_stays_pending_until_drained() {
        let (_db, t) = tree();
        t.insert("k", "old").unwrap();
        let o = Overlay::default();
        o.extend(ops(&[("k", Some("new"))]), looked_up(&t));
        o.extend(ops(&[("k", None)]), looked_up(&t));
        assert_eq!(o.get(b"k"), Some(None));
        assert_eq!(scan(&o, &t, "k"), vec![]);
        assert_eq!(o.drain(&t).unwrap(), 1);
        assert_eq!(t.get("k").unwrap(), None);

        // While a drain holds a removal of "j" in hand, a newer create-then-remove of
        // "j" leaves nothing pending: the tree will lack it once the drain is done.
        t.insert("j", "v1").unwrap();
        o.extend(ops(&[("j", None)]), looked_up(&t));
        let flushing = {
            let mut st = lock(&o.state);
            let taken = std::mem::take(&mut st.active);
            st.flushing = Arc::new(taken);
            st.flushing.clone()
        };
        o.extend(ops(&[("j", Some("v2"))]), looked_up(&t));
        o.extend(ops(&[("j", None)]), looked_up(&t));
        assert_eq!(o.get(b"j"), Some(None));
        write_all(&t, &flushing).unwrap();
        drop(flushing);
        lock(&o.state).flushing = Arc::default();
        assert_eq!(o.get(b"j"), None);
        assert_eq!(t.get("j").unwrap(), None);
    }

    #[test]
    fn removing_a_key_the_writer_did_not_look_up_stays_pending_and_is_harmless() {
        let (_db, t) = tree();
        t.insert("kept", "v").unwrap();
        let o = Overlay::default();
        // Queued without a look-up: the overlay cannot know the tree lacks "k".
        o.extend(ops(&[("k", Some("v"))]), |_| false);
        o.extend(ops(&[("k", None)]), |_| false);
        assert_eq!(o.get(b"k"), Some(None));
        assert_eq!(scan(&o, &t, "k"), vec![("kept".into(), "v".into())]);
        assert_eq!(o.drain(&t).unwrap(), 1);
        assert_eq!(t.get("k").unwrap(), None);
        assert_eq!(t.len(), 1);
        // Known absent: the pair cancels out before any drain.
        o.extend(ops(&[("n", Some("v"))]), |_| true);
        o.extend(ops(&[("n", None)]), |_| false);
        assert_eq!(o.get(b"n"), None);
        assert!(o.is_empty());
    }

    #[test]
    fn merged_scan_interleaves_and_respects_the_prefix() {
        let (_db, t) = tree();
        for k in ["p1", "p3", "p5", "q1"] {
            t.insert(k, k).unwrap();
        }
        let o = Overlay::default();
        o.extend(
            ops(&[
                ("p0", Some("p0")),
                ("p4", Some("p4")),
                ("p5", None),
                ("p6", Some("p6")),
                ("q0", Some("q0")),
            ]),
            looked_up(&t),
        );
        let keys: Vec<String> = scan(&o, &t, "p").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["p0", "p1", "p3", "p4", "p6"]);
    }
}
