//! The in-memory `phy::Device` under the host's smoltcp interface.
//!
//! Owns two queues of raw IP packets (`Medium::Ip`): what the host hands to
//! smoltcp and what smoltcp emits. It never routes, resolves or frames: the
//! host takes every emitted packet to router-core (`pipeline::originate`).

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A smoltcp device whose "wire" is two packet queues owned by the host.
#[derive(Debug)]
pub struct IpDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

impl IpDevice {
    /// A device that lets smoltcp send IP packets of up to `mtu` bytes.
    pub fn new(mtu: usize) -> Self {
        IpDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        }
    }

    /// Queue an IP packet for smoltcp to receive on its next poll.
    pub fn deliver(&mut self, packet: Vec<u8>) {
        self.rx.push_back(packet);
    }

    /// Whether packets wait for smoltcp.
    pub fn has_rx(&self) -> bool {
        !self.rx.is_empty()
    }

    /// The IP packets smoltcp emitted since the last call, in order.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }
}

/// One received packet, handed to smoltcp.
#[derive(Debug)]
pub struct RxPacket(Vec<u8>);

impl phy::RxToken for RxPacket {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one packet smoltcp sends; it lands in the device's transmit queue.
#[derive(Debug)]
pub struct TxSlot<'a>(&'a mut Vec<Vec<u8>>);

impl phy::TxToken for TxSlot<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push(packet);
        r
    }
}

impl phy::Device for IpDevice {
    type RxToken<'a> = RxPacket;
    type TxToken<'a> = TxSlot<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxPacket, TxSlot<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxPacket(packet), TxSlot(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxSlot<'_>> {
        Some(TxSlot(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken, TxToken};

    #[test]
    fn packets_flow_through_both_queues_in_order() {
        let mut dev = IpDevice::new(1500);
        assert_eq!(dev.capabilities().medium, Medium::Ip);
        assert_eq!(dev.capabilities().max_transmission_unit, 1500);
        dev.deliver(vec![1]);
        dev.deliver(vec![2]);
        assert!(dev.has_rx());
        let (rx, tx) = dev.receive(Instant::ZERO).unwrap();
        assert_eq!(rx.consume(|p| p.to_vec()), [1]);
        tx.consume(3, |b| b.copy_from_slice(&[7, 8, 9]));
        let (rx, _) = dev.receive(Instant::ZERO).unwrap();
        assert_eq!(rx.consume(|p| p[0]), 2);
        assert!(dev.receive(Instant::ZERO).is_none());
        dev.transmit(Instant::ZERO)
            .unwrap()
            .consume(1, |b| b[0] = 4);
        assert_eq!(dev.take_tx(), [vec![7, 8, 9], vec![4]]);
        assert!(dev.take_tx().is_empty());
    }
}
