//! Configuring a link's TUN interface through rtnetlink: MTU, alias, addresses, up; and
//! finding the interface a previous run left.

use std::net::IpAddr;

use futures_util::stream::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkUnspec};

/// The alias interlinkd gives the interface of link `name`: how the next run knows an
/// interface of that name as one it left (`ip link` shows it).
pub fn alias(name: &str) -> String {
    format!("interlink link {name}")
}

/// An interface as found by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    pub ifindex: u32,
    /// A TUN interface.
    pub tun: bool,
    pub alias: Option<String>,
}

/// The interface called `name`, if there is one.
pub async fn existing(handle: &Handle, name: &str) -> Result<Option<Existing>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let msg = match links.try_next().await {
        Ok(Some(msg)) => msg,
        Ok(None) => return Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut found = Existing {
        ifindex: msg.header.index,
        tun: false,
        alias: None,
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfAlias(s) => found.alias = Some(s),
            LinkAttribute::LinkInfo(info) => {
                found.tun = info
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Tun)))
            }
            _ => {}
        }
    }
    Ok(Some(found))
}

/// Deletes interface `ifindex`, as `ip link del` would.
pub async fn delete(handle: &Handle, ifindex: u32) -> Result<(), rtnetlink::Error> {
    handle.link().del(ifindex).execute().await
}

/// Sets the MTU and the alias, makes the addresses those given (adding what is missing and
/// removing what is no longer configured, on an interface a previous run left; IPv6
/// link-local ones are the kernel's) and brings the interface up, as `ip link set DEV mtu MTU
/// alias ALIAS; ip addr add ...; ip link set DEV up` would. Addresses already there stay, so
/// the routes through them do.
pub async fn configure(
    handle: &Handle,
    ifindex: u32,
    mtu: u32,
    alias: &str,
    addresses: &[(IpAddr, u8)],
) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(ifindex)
                .mtu(mtu)
                .append_extra_attribute(LinkAttribute::IfAlias(alias.to_owned()))
                .build(),
        )
        .execute()
        .await?;
    let mut present = Vec::new();
    let mut dump = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute();
    while let Some(msg) = dump.try_next().await? {
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(addr) = addr {
            present.push(((addr, msg.header.prefix_len), msg));
        }
    }
    for ((addr, len), msg) in present.iter() {
        let link_local = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
        if !link_local && !addresses.contains(&(*addr, *len)) {
            handle.address().del(msg.clone()).execute().await?;
        }
    }
    for &(addr, prefix_len) in addresses {
        if !present.iter().any(|(a, _)| *a == (addr, prefix_len)) {
            handle
                .address()
                .add(ifindex, addr, prefix_len)
                .execute()
                .await?;
        }
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
}
