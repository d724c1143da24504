//! A compact ordered map for route tables of a million entries, where a hash map's
//! power-of-two buckets and a B-tree's half-full nodes cost twice the entries' own size.
//!
//! Entries live in two sorted arrays, keys and values apart (no padding between them), with
//! a bit per entry for removed ones; new keys go to a small B-tree that is merged into the
//! arrays, in place from the back, once it holds an eighth as many. A table load in key order
//! is appended without the B-tree. Lookups are a binary search. Removed entries are dropped
//! at the next merge, or when they are a quarter of the arrays.
//!
//! Also [`Interner`]: values shared by many routes (attribute sets, next-hop sets) kept once,
//! each under a 4-octet number with a reference count; and [`Prefix`], the project's one
//! prefix type.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

mod prefix;
pub use prefix::{Afi, PerFamily, Prefix, PrefixError, PrefixKey, PrefixMap};

/// Below this, the write buffer is merged whatever the arrays' size.
const MIN_BUFFER: usize = 4096;

pub struct SortedMap<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    /// One bit per array entry: removed.
    dead: Vec<u64>,
    dead_count: usize,
    buffer: BTreeMap<K, V>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            keys: Vec::new(),
            values: Vec::new(),
            dead: Vec::new(),
            dead_count: 0,
            buffer: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, V: Default> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len() - self.dead_count + self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_dead(&self, i: usize) -> bool {
        self.dead
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set_dead(&mut self, i: usize, dead: bool) {
        if self.dead.len() <= i / 64 {
            self.dead.resize(i / 64 + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        if dead {
            self.dead[i / 64] |= bit;
        } else {
            self.dead[i / 64] &= !bit;
        }
    }

    /// The array position of `k`, live or removed.
    fn find(&self, k: &K) -> Result<usize, usize> {
        self.keys.binary_search(k)
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        if let Some(v) = self.buffer.get(k) {
            return Some(v);
        }
        match self.find(k) {
            Ok(i) if !self.is_dead(i) => Some(&self.values[i]),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if self.buffer.contains_key(k) {
            return self.buffer.get_mut(k);
        }
        match self.find(k) {
            Ok(i) if !self.is_dead(i) => Some(&mut self.values[i]),
            _ => None,
        }
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    /// Inserts `v` at `k`; the value it replaces, if any.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some(old) = self.buffer.get_mut(&k) {
            return Some(std::mem::replace(old, v));
        }
        match self.find(&k) {
            Ok(i) if self.is_dead(i) => {
                self.set_dead(i, false);
                self.dead_count -= 1;
                self.values[i] = v;
                None
            }
            Ok(i) => Some(std::mem::replace(&mut self.values[i], v)),
            // After the last key, with nothing buffered: appended in place.
            Err(i) if i == self.keys.len() && self.buffer.is_empty() => {
                self.keys.push(k);
                self.values.push(v);
                None
            }
            Err(_) => {
                self.buffer.insert(k, v);
                if self.buffer.len() >= MIN_BUFFER.max(self.keys.len() / 8) {
                    self.merge();
                }
                None
            }
        }
    }

    /// The value at `k`, inserted as `V::default()` first if there is none.
    pub fn get_or_default(&mut self, k: K) -> &mut V {
        if !self.contains_key(&k) {
            self.insert(k, V::default());
        }
        self.get_mut(&k).expect("just inserted")
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        if let Some(v) = self.buffer.remove(k) {
            return Some(v);
        }
        match self.find(k) {
            Ok(i) if !self.is_dead(i) => {
                self.set_dead(i, true);
                self.dead_count += 1;
                let v = std::mem::take(&mut self.values[i]);
                if self.dead_count * 4 > self.keys.len() {
                    self.compact();
                }
                Some(v)
            }
            _ => None,
        }
    }

    /// Keeps the entries for which `f` (which may change them) says true, and removes the
    /// others: one walk, for a change that touches many entries at once.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        for i in 0..self.keys.len() {
            if !self.is_dead(i) && !f(&self.keys[i], &mut self.values[i]) {
                self.set_dead(i, true);
                self.dead_count += 1;
                self.values[i] = V::default();
            }
        }
        self.buffer.retain(|k, v| f(k, v));
        if self.dead_count * 4 > self.keys.len() {
            self.compact();
        }
    }

    /// Drops removed entries from the arrays, in place.
    fn compact(&mut self) {
        if self.dead_count == 0 {
            return;
        }
        let mut w = 0;
        for r in 0..self.keys.len() {
            if !self.is_dead(r) {
                self.keys.swap(w, r);
                self.values.swap(w, r);
                w += 1;
            }
        }
        self.keys.truncate(w);
        self.values.truncate(w);
        self.keys.shrink_to_fit();
        self.values.shrink_to_fit();
        self.dead.clear();
        self.dead.shrink_to_fit();
        self.dead_count = 0;
    }

    /// Merges the write buffer into the arrays: they grow by its size, and entries move back
    /// from the end, so that nothing is copied twice and no second array is needed.
    fn merge(&mut self) {
        self.compact();
        let add = self.buffer.len();
        if add == 0 {
            return;
        }
        let old = self.keys.len();
        let Some(&fill) = self.buffer.keys().next() else {
            return;
        };
        self.keys.resize(old + add, fill);
        self.values.resize_with(old + add, V::default);
        let mut w = old + add;
        let mut r = old;
        let buffer = std::mem::take(&mut self.buffer);
        for (k, v) in buffer.into_iter().rev() {
            // Array entries above `k` move up first.
            while r > 0 && self.keys[r - 1] > k {
                r -= 1;
                w -= 1;
                self.keys[w] = self.keys[r];
                self.values.swap(w, r);
            }
            w -= 1;
            self.keys[w] = k;
            self.values[w] = v;
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let arrays = self
            .keys
            .iter()
            .zip(&self.values)
            .enumerate()
            .filter(|(i, _)| !self.is_dead(*i))
            .map(|(_, kv)| kv);
        Merge {
            a: arrays.peekable(),
            b: self.buffer.iter().peekable(),
        }
    }

    /// The entries from `k` on (`k` included), in key order: a walk resumed where it stopped.
    pub fn iter_from(&self, k: &K) -> impl Iterator<Item = (&K, &V)> {
        let start = self.keys.partition_point(|x| x < k);
        let arrays = self.keys[start..]
            .iter()
            .zip(&self.values[start..])
            .enumerate()
            .filter(move |(i, _)| !self.is_dead(start + *i))
            .map(|(_, kv)| kv);
        Merge {
            a: arrays.peekable(),
            b: self.buffer.range(*k..).peekable(),
        }
    }

    /// Every value, mutable, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        let dead = &self.dead;
        let live = move |i: usize| dead.get(i / 64).is_none_or(|w| w & (1 << (i % 64)) == 0);
        self.values
            .iter_mut()
            .enumerate()
            .filter(move |(i, _)| live(*i))
            .map(|(_, v)| v)
            .chain(self.buffer.values_mut())
    }

    /// The keys whose values satisfy `f`, in key order.
    pub fn keys_where(&self, f: impl Fn(&V) -> bool) -> Vec<K> {
        self.iter().filter(|(_, v)| f(v)).map(|(k, _)| *k).collect()
    }
}

/// Two sorted iterators as one.
struct Merge<'a, K, V, A: Iterator<Item = (&'a K, &'a V)>, B: Iterator<Item = (&'a K, &'a V)>>
where
    K: 'a,
    V: 'a,
{
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, K: Ord + 'a, V: 'a, A, B> Iterator for Merge<'a, K, V, A, B>
where
    A: Iterator<Item = (&'a K, &'a V)>,
    B: Iterator<Item = (&'a K, &'a V)>,
{
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some((ka, _)), Some((kb, _))) => {
                if ka <= kb {
                    self.a.next()
                } else {
                    self.b.next()
                }
            }
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// Values kept once each, under numbers that are reused once their last reference goes.
pub struct Interner<T> {
    list: Vec<(Option<T>, u32)>,
    index: HashMap<T, u32>,
    free: Vec<u32>,
    /// The value interned last: a table load repeats it, so it is compared before hashing.
    last: Option<u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            list: Vec::new(),
            index: HashMap::new(),
            free: Vec::new(),
            last: None,
        }
    }
}

impl<T: Hash + Eq + Clone> Interner<T> {
    /// The number of `v`, with one more reference.
    pub fn intern(&mut self, v: &T) -> u32 {
        if let Some(i) = self.last {
            if let Some((Some(x), refs)) = self.list.get_mut(i as usize) {
                if x == v {
                    *refs += 1;
                    return i;
                }
            }
        }
        if let Some(&i) = self.index.get(v) {
            self.list[i as usize].1 += 1;
            self.last = Some(i);
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.list[i as usize] = (Some(v.clone()), 1);
                i
            }
            None => {
                self.list.push((Some(v.clone()), 1));
                u32::try_from(self.list.len() - 1).expect("fewer than 2^32 values")
            }
        };
        self.index.insert(v.clone(), i);
        self.last = Some(i);
        i
    }

    /// One more reference to `id`.
    pub fn retain(&mut self, id: u32) {
        self.list[id as usize].1 += 1;
    }

    /// One reference less; the value goes with its last one.
    pub fn release(&mut self, id: u32) {
        let e = &mut self.list[id as usize];
        e.1 -= 1;
        if e.1 == 0 {
            if let Some(v) = e.0.take() {
                self.index.remove(&v);
            }
            if self.last == Some(id) {
                self.last = None;
            }
            self.free.push(id);
        }
    }

    /// The value of a live number.
    pub fn get(&self, id: u32) -> &T {
        self.list[id as usize].0.as_ref().expect("a live number")
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;

    #[test]
    fn values_are_kept_once_and_go_with_their_last_reference() {
        let mut i = Interner::default();
        let a = i.intern(&"a".to_owned());
        assert_eq!(i.intern(&"a".to_owned()), a);
        let b = i.intern(&"b".to_owned());
        assert_ne!(a, b);
        assert_eq!(i.len(), 2);
        i.release(a);
        assert_eq!(i.get(a), "a", "one reference left");
        i.release(a);
        assert_eq!(i.len(), 1);
        // The number is reused.
        assert_eq!(i.intern(&"c".to_owned()), a);
        i.retain(b);
        i.release(b);
        assert_eq!(i.get(b), "b");
    }

    /// `retain` removes what it is told to, from the arrays and the write buffer alike, keeps
    /// what it changed, and leaves the map as a later insert, lookup and walk expect.
    #[test]
    fn retain_removes_and_changes_in_one_walk() {
        let mut m = super::SortedMap::<u32, u32>::new();
        for k in 0..10_000 {
            m.insert(k * 2, k);
        }
        // Some in the write buffer too (below the last key).
        for k in 0..100 {
            m.insert(k * 2 + 1, 7);
        }
        m.retain(|_, v| {
            *v += 1;
            *v % 3 != 0
        });
        let expect: Vec<(u32, u32)> = (0..10_000)
            .map(|k| (k * 2, k + 1))
            .chain((0..100).map(|k| (k * 2 + 1, 8)))
            .filter(|(_, v)| v % 3 != 0)
            .collect();
        let mut got: Vec<(u32, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        got.sort_unstable();
        let mut expect = expect;
        expect.sort_unstable();
        assert_eq!(got, expect);
        assert_eq!(m.len(), expect.len());
        assert_eq!(m.get(&6), Some(&4));
        assert_eq!(m.get(&10), None, "5 + 1 = 6 went");
        m.insert(10, 1);
        assert_eq!(m.get(&10), Some(&1));
    }
}
