//! Which connected networks next hops cannot be reached through now, from the kernel's link
//! and address events: the networks of the interfaces that are down. The routing protocols
//! take a route whose next hop lies in one of them out of selection (RFC 4271 §9.1.2.1).

use std::collections::{HashMap, HashSet};

use crate::fib::FibEvent;
use crate::route::Prefix;

/// The interfaces down and the networks on each, kept from [`FibEvent`]s.
#[derive(Debug, Default)]
pub struct Reachability {
    nets: HashMap<u32, Vec<Prefix>>,
    down: HashSet<u32>,
}

impl Reachability {
    pub fn track(&mut self, e: &FibEvent) {
        match e {
            FibEvent::AddressAdded {
                ifindex, prefix, ..
            } => {
                let v = self.nets.entry(*ifindex).or_default();
                if !v.contains(prefix) {
                    v.push(*prefix);
                }
            }
            FibEvent::AddressRemoved {
                ifindex, prefix, ..
            } => {
                if let Some(v) = self.nets.get_mut(ifindex) {
                    v.retain(|p| p != prefix);
                }
            }
            FibEvent::LinkDown { ifindex, .. } => {
                self.down.insert(*ifindex);
            }
            FibEvent::LinkUp { ifindex, .. } => {
                self.down.remove(ifindex);
            }
            _ => {}
        }
    }

    /// The networks of the interfaces that are down.
    pub fn unreachable(&self) -> impl Iterator<Item = &Prefix> {
        self.down
            .iter()
            .flat_map(|i| self.nets.get(i).into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn networks_of_interfaces_down() {
        let p = Prefix::new("169.254.0.0".parse().unwrap(), 30).unwrap();
        let a: IpAddr = "169.254.0.1".parse().unwrap();
        let mut r = Reachability::default();
        r.track(&FibEvent::AddressAdded {
            ifindex: 7,
            address: a,
            prefix: p,
        });
        assert_eq!(r.unreachable().count(), 0);
        r.track(&FibEvent::LinkDown {
            ifindex: 7,
            name: "il0".into(),
        });
        assert_eq!(r.unreachable().collect::<Vec<_>>(), [&p]);
        r.track(&FibEvent::LinkUp {
            ifindex: 7,
            name: "il0".into(),
        });
        assert_eq!(r.unreachable().count(), 0);
        r.track(&FibEvent::LinkDown {
            ifindex: 7,
            name: "il0".into(),
        });
        r.track(&FibEvent::AddressRemoved {
            ifindex: 7,
            address: a,
            prefix: p,
        });
        assert_eq!(r.unreachable().count(), 0, "no address left on it");
    }
}
