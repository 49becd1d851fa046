//! `Slab`: the connections' table. Connection ids index a vector instead of a hash map: at
//! 100k connections a hash map's buckets (sized to a power of two, filled at random) keep up
//! to twice the entries resident, and every lookup hashes; a slab keeps each entry once, in
//! order, and frees places are reused first.
//!
//! An id is the slot's index in the low 32 bits and the slot's generation (bumped on each
//! reuse) in the high 32, so a stale id never reaches the connection that took its slot. Ids
//! are never 0 (the edge uses 0 for "not connected").

use super::index::ConnId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

fn split(id: ConnId) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.generation = slot.generation.wrapping_add(1).max(1);
                slot.value = Some(value);
                index
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 connections");
                self.slots.push(Slot {
                    generation: 1,
                    value: Some(value),
                });
                index
            }
        };
        (u64::from(self.slots[index as usize].generation) << 32) | u64::from(index)
    }

    fn slot(&self, id: ConnId) -> Option<&Slot<T>> {
        let (index, generation) = split(id);
        self.slots.get(index).filter(|s| s.generation == generation)
    }

    pub fn get(&self, id: &ConnId) -> Option<&T> {
        self.slot(*id).and_then(|s| s.value.as_ref())
    }

    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut T> {
        let (index, generation) = split(*id);
        self.slots
            .get_mut(index)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
    }

    pub fn remove(&mut self, id: &ConnId) -> Option<T> {
        let (index, generation) = split(*id);
        let slot = self.slots.get_mut(index).filter(|s| s.generation == generation)?;
        let value = slot.value.take()?;
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    pub fn clear(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.value.take().is_some() {
                self.free.push(index as u32);
            }
        }
        self.len = 0;
    }
}

/// Data kept beside a slab under the same ids (the Python side's handles), in a vector of
/// its own, indexed the same way.
pub struct SideTable<T> {
    slots: Vec<Option<(ConnId, T)>>,
}

impl<T> Default for SideTable<T> {
    fn default() -> Self {
        SideTable { slots: Vec::new() }
    }
}

impl<T> SideTable<T> {
    pub fn insert(&mut self, id: ConnId, value: T) {
        let (index, _) = split(id);
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some((id, value));
    }

    pub fn get(&self, id: &ConnId) -> Option<&T> {
        let (index, _) = split(*id);
        match self.slots.get(index) {
            Some(Some((held, value))) if held == id => Some(value),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: &ConnId) -> Option<T> {
        let (index, _) = split(*id);
        let slot = self.slots.get_mut(index)?;
        if slot.as_ref().is_some_and(|(held, _)| held == id) {
            slot.take().map(|(_, v)| v)
        } else {
            None
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(_, v)| v))
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_zero_and_stale_ids_miss() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(slab.remove(&a), Some("a"));
        assert_eq!(slab.remove(&a), None);
        let c = slab.insert("c"); // takes a's place
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff);
        assert_ne!(c, a);
        assert_eq!(slab.get(&a), None);
        assert_eq!(slab.get(&c), Some(&"c"));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.values().copied().collect::<Vec<_>>(), vec!["c", "b"]);
        assert_eq!(slab.get(&0), None);
        assert_eq!(slab.get(&u64::MAX), None);
    }

    #[test]
    fn side_table_follows_the_slab_ids() {
        let mut slab = Slab::default();
        let mut side = SideTable::default();
        let a = slab.insert(());
        side.insert(a, "handle a");
        slab.remove(&a);
        side.remove(&a);
        let b = slab.insert(());
        assert_eq!(side.get(&b), None);
        side.insert(b, "handle b");
        assert_eq!(side.get(&a), None);
        assert_eq!(side.remove(&a), None);
        assert_eq!(side.get(&b), Some(&"handle b"));
    }
}
