//! Iterators. Borrowing iteration walks the trie with a fixed-size stack and never allocates.

use std::fmt;
use std::iter::FusedIterator;
use std::mem;

use triomphe::Arc;

use crate::node::{self, MAX_DEPTH, Node, Slot};

/// A depth-first walk over the slots under one starting point, with a fixed-size stack.
pub(crate) struct Walk<'a, K, V> {
    stack: [std::slice::Iter<'a, Slot<K, V>>; MAX_DEPTH],
    depth: usize,
}

impl<'a, K, V> Walk<'a, K, V> {
    /// A walk over `slots` (the root's, or a single slot) and everything under them.
    pub(crate) fn new(slots: &'a [Slot<K, V>]) -> Self {
        let mut stack: [std::slice::Iter<'a, Slot<K, V>>; MAX_DEPTH] =
            std::array::from_fn(|_| [].iter());
        stack[0] = slots.iter();
        Walk { stack, depth: 1 }
    }

    /// A walk that yields nothing.
    pub(crate) fn empty() -> Self {
        Walk {
            stack: std::array::from_fn(|_| [].iter()),
            depth: 0,
        }
    }
}

impl<'a, K, V> Iterator for Walk<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while self.depth > 0 {
            match self.stack[self.depth - 1].next() {
                Some(Slot::Entry(k, v)) => return Some((k, v)),
                Some(Slot::Child(child)) => {
                    // The trie is at most MAX_DEPTH levels deep, so this never overflows.
                    self.stack[self.depth] = child.slice.iter();
                    self.depth += 1;
                }
                Some(Slot::Vacant) => {}
                None => self.depth -= 1,
            }
        }
        None
    }
}

impl<K, V> Clone for Walk<'_, K, V> {
    fn clone(&self) -> Self {
        Walk {
            stack: self.stack.clone(),
            depth: self.depth,
        }
    }
}

/// An iterator over the entries of a [`HamtMap`](crate::HamtMap), in unspecified order.
///
/// Created by [`HamtMap::iter`](crate::HamtMap::iter). It never allocates.
///
/// ```
/// let map: hamt::HamtMap<_, _> = [(1, 10), (2, 20), (3, 30)].into_iter().collect();
/// let mut iter = map.iter();
/// assert_eq!(iter.len(), 3);
/// let mut pairs: Vec<(&i32, &i32)> = iter.by_ref().collect();
/// pairs.sort();
/// assert_eq!(pairs, [(&1, &10), (&2, &20), (&3, &30)]);
/// assert_eq!(iter.next(), None);
/// ```
pub struct Iter<'a, K, V> {
    walk: Walk<'a, K, V>,
    remaining: usize,
}

impl<'a, K, V> Iter<'a, K, V> {
    pub(crate) fn new(root: Option<&'a Node<K, V>>, len: usize) -> Self {
        let walk = root.map_or_else(Walk::empty, |node| Walk::new(&node.slice));
        Iter {
            walk,
            remaining: len,
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.walk.next()?;
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            walk: self.walk.clone(),
            remaining: self.remaining,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// An iterator over the keys of a [`HamtMap`](crate::HamtMap).
///
/// Created by [`HamtMap::keys`](crate::HamtMap::keys).
///
/// ```
/// let map: hamt::HamtMap<_, _> = [("x", 1), ("y", 2)].into_iter().collect();
/// let mut keys: Vec<&str> = map.keys().copied().collect();
/// keys.sort_unstable();
/// assert_eq!(keys, ["x", "y"]);
/// ```
pub struct Keys<'a, K, V> {
    pub(crate) inner: Iter<'a, K, V>,
}

impl<'a, K, V> Iterator for Keys<'a, K, V> {
    type Item = &'a K;

    #[inline]
    fn next(&mut self) -> Option<&'a K> {
        self.inner.next().map(|(k, _)| k)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> Clone for Keys<'_, K, V> {
    fn clone(&self) -> Self {
        Keys {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> ExactSizeIterator for Keys<'_, K, V> {}
impl<K, V> FusedIterator for Keys<'_, K, V> {}

impl<K: fmt::Debug, V> fmt::Debug for Keys<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// An iterator over the values of a [`HamtMap`](crate::HamtMap).
///
/// Created by [`HamtMap::values`](crate::HamtMap::values).
///
/// ```
/// let map: hamt::HamtMap<_, _> = [("x", 1), ("y", 2), ("z", 3)].into_iter().collect();
/// let values = map.values();
/// assert_eq!(values.len(), 3);
/// assert_eq!(values.sum::<i32>(), 6);
/// ```
pub struct Values<'a, K, V> {
    pub(crate) inner: Iter<'a, K, V>,
}

impl<'a, K, V> Iterator for Values<'a, K, V> {
    type Item = &'a V;

    #[inline]
    fn next(&mut self) -> Option<&'a V> {
        self.inner.next().map(|(_, v)| v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> Clone for Values<'_, K, V> {
    fn clone(&self) -> Self {
        Values {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> ExactSizeIterator for Values<'_, K, V> {}
impl<K, V> FusedIterator for Values<'_, K, V> {}

impl<K, V: fmt::Debug> fmt::Debug for Values<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// A mutable iterator over the entries of a [`HamtMap`](crate::HamtMap), in unspecified
/// order: keys by shared reference, values by mutable reference.
///
/// Created by [`HamtMap::iter_mut`](crate::HamtMap::iter_mut). Each node is made uniquely
/// owned when the iterator reaches it (copied if another version shares it), so other
/// versions never see the changes. On a map that shares nothing it neither copies nor
/// allocates.
///
/// ```
/// let old: hamt::HamtMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
/// let mut new = old.clone();
/// for (_, value) in new.iter_mut() {
///     *value *= 10;
/// }
/// assert_eq!((new["a"], new["b"]), (10, 20));
/// assert_eq!((old["a"], old["b"]), (1, 2)); // the shared version is untouched
/// ```
pub struct IterMut<'a, K, V> {
    stack: [std::slice::IterMut<'a, Slot<K, V>>; MAX_DEPTH],
    depth: usize,
    remaining: usize,
}

impl<'a, K: Clone, V: Clone> IterMut<'a, K, V> {
    pub(crate) fn new(root: Option<&'a mut Node<K, V>>, len: usize) -> Self {
        let mut stack: [std::slice::IterMut<'a, Slot<K, V>>; MAX_DEPTH] =
            std::array::from_fn(|_| Default::default());
        let depth = match root {
            Some(root) => {
                stack[0] = node::make_mut(root).slice.iter_mut();
                1
            }
            None => 0,
        };
        IterMut {
            stack,
            depth,
            remaining: len,
        }
    }
}

/// Empties an iterator (its depth and remaining count) if dropped while unwinding.
struct StopOnUnwind<'s>(&'s mut usize, &'s mut usize);

impl Drop for StopOnUnwind<'_> {
    fn drop(&mut self) {
        *self.0 = 0;
        *self.1 = 0;
    }
}

impl<'a, K: Clone, V: Clone> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while self.depth > 0 {
            match self.stack[self.depth - 1].next() {
                Some(Slot::Entry(k, v)) => {
                    self.remaining -= 1;
                    return Some((k, v));
                }
                Some(Slot::Child(child)) => {
                    // Copy-on-write, one node at a time: a shared child is copied here (its
                    // own children become shared by the copy and are copied in turn when
                    // reached). If a `Clone` panics, the child is left as it was, and the
                    // iterator ends (its slot is passed): it says so, rather than go on with
                    // a subtree missing from what it promised.
                    let stop = StopOnUnwind(&mut self.depth, &mut self.remaining);
                    let body = node::make_mut(child);
                    mem::forget(stop);
                    // The trie is at most MAX_DEPTH levels deep, so this never overflows.
                    self.stack[self.depth] = body.slice.iter_mut();
                    self.depth += 1;
                }
                Some(Slot::Vacant) => {}
                None => self.depth -= 1,
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K: Clone, V: Clone> ExactSizeIterator for IterMut<'_, K, V> {}
impl<K: Clone, V: Clone> FusedIterator for IterMut<'_, K, V> {}

impl<K, V> fmt::Debug for IterMut<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IterMut")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// A mutable iterator over the values of a [`HamtMap`](crate::HamtMap).
///
/// Created by [`HamtMap::values_mut`](crate::HamtMap::values_mut); it unshares nodes as
/// [`IterMut`] does.
///
/// ```
/// let mut map: hamt::HamtMap<_, _> = [(1, String::from("a")), (2, String::from("b"))]
///     .into_iter()
///     .collect();
/// for value in map.values_mut() {
///     value.push('!');
/// }
/// assert_eq!((map[&1].as_str(), map[&2].as_str()), ("a!", "b!"));
/// ```
pub struct ValuesMut<'a, K, V> {
    pub(crate) inner: IterMut<'a, K, V>,
}

impl<'a, K: Clone, V: Clone> Iterator for ValuesMut<'a, K, V> {
    type Item = &'a mut V;

    #[inline]
    fn next(&mut self) -> Option<&'a mut V> {
        self.inner.next().map(|(_, v)| v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K: Clone, V: Clone> ExactSizeIterator for ValuesMut<'_, K, V> {}
impl<K: Clone, V: Clone> FusedIterator for ValuesMut<'_, K, V> {}

impl<K, V> fmt::Debug for ValuesMut<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValuesMut")
            .field("remaining", &self.inner.remaining)
            .finish_non_exhaustive()
    }
}

/// One level of an owning walk: a node and the next slot to visit in it.
struct Frame<K, V> {
    node: Node<K, V>,
    next: usize,
}

/// An owning iterator over the entries of a [`HamtMap`](crate::HamtMap).
///
/// Created by `into_iter`. Entries are moved out of nodes this iterator owns alone and cloned
/// from nodes still shared with other maps. It never allocates.
///
/// ```
/// let map: hamt::HamtMap<_, _> = [(2, 'b'), (1, 'a')].into_iter().collect();
/// let kept = map.clone(); // shares every node, so those entries are cloned out
/// let mut pairs: Vec<(i32, char)> = map.into_iter().collect();
/// pairs.sort_unstable();
/// assert_eq!(pairs, [(1, 'a'), (2, 'b')]);
/// assert_eq!(kept.len(), 2);
/// ```
pub struct IntoIter<K, V> {
    stack: [Option<Frame<K, V>>; MAX_DEPTH],
    depth: usize,
    remaining: usize,
}

impl<K, V> IntoIter<K, V> {
    pub(crate) fn new(root: Option<Node<K, V>>, len: usize) -> Self {
        let mut stack: [Option<Frame<K, V>>; MAX_DEPTH] = std::array::from_fn(|_| None);
        let depth = usize::from(root.is_some());
        stack[0] = root.map(|node| Frame { node, next: 0 });
        IntoIter {
            stack,
            depth,
            remaining: len,
        }
    }
}

impl<K: Clone, V: Clone> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        while self.depth > 0 {
            let Some(frame) = &mut self.stack[self.depth - 1] else {
                self.depth -= 1;
                continue;
            };
            let pos = frame.next;
            if pos >= frame.node.slice.len() {
                self.stack[self.depth - 1] = None;
                self.depth -= 1;
                continue;
            }
            let slot = match Arc::get_mut(&mut frame.node) {
                Some(body) => mem::replace(&mut body.slice[pos], Slot::Vacant),
                // A `Clone` that panics leaves the position as it was: a caught panic and
                // the next call clone this slot again, so nothing is skipped.
                None => frame.node.slice[pos].clone(),
            };
            frame.next += 1;
            match slot {
                Slot::Entry(k, v) => {
                    self.remaining -= 1;
                    return Some((k, v));
                }
                Slot::Child(node) => {
                    self.stack[self.depth] = Some(Frame { node, next: 0 });
                    self.depth += 1;
                }
                Slot::Vacant => {}
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K: Clone, V: Clone> ExactSizeIterator for IntoIter<K, V> {}
impl<K: Clone, V: Clone> FusedIterator for IntoIter<K, V> {}

impl<K, V> fmt::Debug for IntoIter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}
