//! The map against std's BTreeMap: any sequence of inserts, removals and lookups gives the
//! same answers, and iteration the same order, through merges and compactions.

use std::collections::BTreeMap;

use interlink_table::SortedMap;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert(u32, u32),
    Remove(u32),
    Get(u32),
}

fn op() -> impl Strategy<Value = Op> {
    // A small key space, so that keys meet again; some runs in order, for the append path.
    prop_oneof![
        (0u32..6000, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u32..6000).prop_map(Op::Remove),
        (0u32..6000).prop_map(Op::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 1..20000)) {
        let mut m = SortedMap::new();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                Op::Remove(k) => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                Op::Get(k) => prop_assert_eq!(m.get(&k), model.get(&k)),
            }
            prop_assert_eq!(m.len(), model.len());
        }
        let a: Vec<(u32, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        let b: Vec<(u32, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(a, b);
        // A walk resumed from any key, present or not.
        for from in [0u32, 1, 2999, 3000, 5999, 6000] {
            let a: Vec<(u32, u32)> = m.iter_from(&from).map(|(k, v)| (*k, *v)).collect();
            let b: Vec<(u32, u32)> = model.range(from..).map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn a_million_in_order_then_out_of_order() {
    let mut m = SortedMap::new();
    for k in 0..1_000_000u64 {
        m.insert(k * 2, k);
    }
    // Odd keys, descending: all through the buffer and its merges.
    for k in (0..100_000u64).rev() {
        m.insert(k * 2 + 1, k);
    }
    assert_eq!(m.len(), 1_100_000);
    assert_eq!(m.get(&7), Some(&3));
    assert_eq!(m.get(&1_999_998), Some(&999_999));
    let keys: Vec<u64> = m.iter().map(|(k, _)| *k).take(5).collect();
    assert_eq!(keys, [0, 1, 2, 3, 4]);
    for k in 0..500_000u64 {
        assert_eq!(m.remove(&(k * 2)), Some(k));
    }
    assert_eq!(m.len(), 600_000);
    assert!(m.iter().all(|(k, _)| k % 2 == 1 || *k >= 1_000_000));
    *m.get_or_default(4) += 9;
    assert_eq!(m.get(&4), Some(&9));
    for v in m.values_mut() {
        *v = 1;
    }
    assert!(m.iter().all(|(_, v)| *v == 1));
}
