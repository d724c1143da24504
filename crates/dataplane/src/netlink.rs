//! Configuring a link's TUN interface through rtnetlink: MTU, addresses, up.

use std::net::IpAddr;

use rtnetlink::{Handle, LinkUnspec};

/// Sets the MTU, adds the addresses and brings the interface up, as
/// `ip link set DEV mtu MTU; ip addr add ...; ip link set DEV up` would.
pub async fn configure(
    handle: &Handle,
    ifindex: u32,
    mtu: u32,
    addresses: &[(IpAddr, u8)],
) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(ifindex).mtu(mtu).build())
        .execute()
        .await?;
    for &(addr, prefix_len) in addresses {
        handle
            .address()
            .add(ifindex, addr, prefix_len)
            .execute()
            .await?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
}
