//! The members of many groups at once: each group's set and their union,
//! kept as groups change. A host of thousands of groups changes one group at
//! a time (an election, a membership change, a close); recomputing the union
//! over every group on each change made opening N groups cost N².

use std::collections::{BTreeSet, HashMap};

/// Each group's members and, per member, in how many groups it is.
#[derive(Debug, Default)]
pub struct MemberUnion {
    groups: HashMap<u64, BTreeSet<String>>,
    counts: HashMap<String, usize>,
}

/// What a change did to the union.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnionChange {
    /// Members now in some group and in none before.
    pub added: Vec<String>,
    /// Members in some group before and in none now.
    pub removed: Vec<String>,
}

impl MemberUnion {
    /// Sets `group`'s members (`None`: the group is gone).
    pub fn set(&mut self, group: u64, members: Option<BTreeSet<String>>) -> UnionChange {
        let mut change = UnionChange::default();
        if self.groups.get(&group) == members.as_ref() {
            return change;
        }
        let old = match members.clone() {
            Some(m) => self.groups.insert(group, m),
            None => self.groups.remove(&group),
        };
        for m in old.into_iter().flatten() {
            if let Some(n) = self.counts.get_mut(&m) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&m);
                    change.removed.push(m);
                }
            }
        }
        for m in members.into_iter().flatten() {
            let n = self.counts.entry(m.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                change.added.push(m);
            }
        }
        // A member both left and came back is neither.
        change.removed.retain(|m| !self.counts.contains_key(m));
        change
    }

    /// Whether `member` is in any group.
    pub fn contains(&self, member: &str) -> bool {
        self.counts.contains_key(member)
    }

    /// Every member of any group, in no order.
    pub fn members(&self) -> impl Iterator<Item = &String> {
        self.counts.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> Option<BTreeSet<String>> {
        Some(v.iter().map(|m| m.to_string()).collect())
    }

    fn sorted(u: &MemberUnion) -> Vec<&str> {
        let mut m: Vec<&str> = u.members().map(String::as_str).collect();
        m.sort();
        m
    }

    #[test]
    fn the_union_follows_groups_as_they_open_change_and_close() {
        let mut u = MemberUnion::default();
        let c = u.set(1, set(&["a", "b"]));
        assert_eq!((c.added.len(), c.removed.len()), (2, 0));
        let c = u.set(2, set(&["b", "c"]));
        assert_eq!(c.added, vec!["c".to_string()]);
        assert_eq!(sorted(&u), ["a", "b", "c"]);
        assert_eq!(u.set(1, set(&["a", "b"])), UnionChange::default());
        let c = u.set(1, set(&["b"]));
        assert_eq!(c.removed, vec!["a".to_string()]);
        assert_eq!(sorted(&u), ["b", "c"]);
        assert!(u.set(2, None).removed == vec!["c".to_string()]);
        assert!(u.contains("b") && !u.contains("c"));
        assert_eq!(u.set(1, None).removed, vec!["b".to_string()]);
        assert_eq!(u.set(3, None), UnionChange::default());
        assert!(sorted(&u).is_empty());
    }
}
