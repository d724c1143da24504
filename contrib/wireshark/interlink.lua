-- interlink.lua: Wireshark and tshark see interlink's UDP transport for what it is.
--
-- An interlink link over UDP carries IEEE 802.1AE frames from the SecTAG on (the DA, SA and
-- EtherType 88E5 an Ethernet header would carry are left out: both ends know them), and
-- MKPDUs as the EtherType 888E followed by the EAPOL frame. This dissector hands the first to
-- Wireshark's MACsec dissector and the second to its EAPOL (and so MKA) dissector. It
-- decodes nothing itself, and decrypts nothing: the SecTAG (TCI, AN, SL, PN, SCI) shows, the
-- user data stays ciphertext.
--
-- Install: copy to ~/.local/lib/wireshark/plugins/ (or /usr/lib/x86_64-linux-gnu/wireshark/
-- plugins/), or for one run: tshark -X lua_script:interlink.lua -r capture.pcap
-- The Debian package puts it in /usr/share/doc/interlink/contrib/wireshark/.
--
-- Ports: 61440 (interlink's default) and the lanes after it, 61441 to 61447; change them in
-- Preferences > Protocols > ILSEC, or use Decode As > UDP port > ILSEC. Display filter:
-- ilsec (ilsec.kind == 1: MACsec frames, 2: MKPDUs).
--
-- SPDX-License-Identifier: GPL-3.0-or-later

-- The protocol is "ilsec": Wireshark already has an unrelated "interlink" (packet-interlink.c).
local interlink = Proto("ilsec", "interlink encrypted link (IEEE 802.1AE over UDP)")

local f_kind = ProtoField.uint8("ilsec.kind", "Carries", base.DEC,
    { [1] = "MACsec frame (SecTAG on)", [2] = "MKPDU (EAPOL)" })
interlink.fields = { f_kind }

local e_short = ProtoExpert.new("ilsec.short", "Too short for a SecTAG or an MKPDU",
    expert.group.MALFORMED, expert.severity.ERROR)
interlink.experts = { e_short }

interlink.prefs.port = Pref.uint("First UDP port", 61440, "The UDP port of lane 0")
interlink.prefs.lanes = Pref.uint("Lanes", 8, "How many ports from the first one are interlink's")

local ETHERTYPE_MACSEC = 0x88e5
local ETHERTYPE_EAPOL = 0x888e

-- The dissectors Ethernet hands these EtherTypes to (MACsec has no name to look it up by).
local ethertype = DissectorTable.get("ethertype")
local macsec = ethertype:get_dissector(ETHERTYPE_MACSEC)
local eapol = ethertype:get_dissector(ETHERTYPE_EAPOL)

function interlink.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    local t = tree:add(interlink, tvb(0, math.min(len, 2)))
    if len < 2 then
        t:add_proto_expert_info(e_short)
        return len
    end
    if tvb(0, 2):uint() == ETHERTYPE_EAPOL then
        -- 888E can start no SecTAG: its first octet would have the V bit set.
        t:add(f_kind, tvb(0, 2), 2)
        eapol:call(tvb(2):tvb(), pinfo, tree)
    else
        t:add(f_kind, tvb(0, 1), 1)
        macsec:call(tvb, pinfo, tree)
    end
    pinfo.cols.protocol:prepend("ilsec/")
    return len
end

local registered = {}

local function register_ports()
    local udp = DissectorTable.get("udp.port")
    for _, p in ipairs(registered) do
        udp:remove(p, interlink)
    end
    registered = {}
    for i = 0, interlink.prefs.lanes - 1 do
        local p = interlink.prefs.port + i
        if p <= 65535 then
            udp:add(p, interlink)
            table.insert(registered, p)
        end
    end
end

function interlink.prefs_changed()
    register_ports()
end

register_ports()
