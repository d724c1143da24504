//! A compact ordered map for route tables of a million entries, where a hash map's
//! power-of-two buckets and a B-tree's half-full nodes cost twice the entries' own size.
//!
//! Entries live in two sorted arrays, keys and values apart (no padding between them), with
//! a bit per entry for removed ones; new keys go to a small B-tree that is merged into the
//! arrays, in place from the back, once it holds an eighth as many. A table load in key order
//! is appended without the B-tree. Lookups are a binary search. Removed entries are dropped
//! at the next merge, or when they are a quarter of the arrays.

use std::collections::BTreeMap;

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
