"""The deviations the baseline enforcer reports: one rule per kind of deviation, with severity, an
explanation for the analyst, and MITRE ATT&CK for ICS techniques (ids/detect/attack.py)."""
from __future__ import annotations

from ..api import RuleInfo

BaselineRule = RuleInfo  # the old name


_R = [
    # generic
    BaselineRule("otids.baseline.new_asset", "New asset", "medium",
                 "A device not in the baseline's assets took part in OT traffic: a new or replaced device, a "
                 "maintenance laptop, or a rogue master.", ("T0848",)),
    BaselineRule("otids.baseline.new_talker_pair", "New talker pair", "medium",
                 "Two known devices talked with a protocol they were never seen using together.", ("T0886",)),
    BaselineRule("otids.baseline.new_port", "Known pair on a new port", "low",
                 "A known client and server used their protocol on a server port not in the baseline."),
    BaselineRule("otids.baseline.asset_mac_changed", "Asset seen with a new MAC address", "medium",
                 "An IP address of the baseline appeared with a hardware address it never had: a replaced "
                 "device, or someone answering for it (ARP spoofing).", ("T0830",)),
    BaselineRule("otids.baseline.asset_identity_changed", "Device identity changed", "high",
                 "A device reported a different vendor, product, revision or application identity than the one "
                 "learned (Modbus FC 43/14 or FC 17, OPC UA application description): firmware change, device "
                 "replacement or spoofing."),
    BaselineRule("otids.baseline.denied", "Traffic matching a denied baseline entry", "high",
                 "Traffic matched an entry an engineer marked `status: denied` in the baseline."),
    # Modbus
    BaselineRule("otids.baseline.modbus.new_unit", "New Modbus unit for a known pair", "medium",
                 "A master addressed a unit id of a slave it never addressed: a gateway being explored, or "
                 "unit-id scanning.", ("T0846",)),
    BaselineRule("otids.baseline.modbus.new_function", "New Modbus function code for a pair", "high",
                 "A master used a function code it never used towards this slave and unit (e.g. the first write, "
                 "a diagnostics or programming function).", ("T0855",)),
    BaselineRule("otids.baseline.modbus.address_out_of_range", "Modbus access outside learned ranges", "high",
                 "A master read or wrote addresses outside the ranges it was seen using for this slave and unit.",
                 ("T0855", "T0836")),
    BaselineRule("otids.baseline.modbus.value_out_of_band", "Modbus written value out of band", "high",
                 "A value written to a holding register lies outside the band learned for that register.",
                 ("T0836", "T0831")),
    BaselineRule("otids.baseline.modbus.poll_period_changed", "Modbus polling period changed", "medium",
                 "A periodic request (same pair, unit, function and address) now repeats at a different period: "
                 "a changed or added master, or someone polling alongside it.", ("T0802",)),
    BaselineRule("otids.baseline.modbus.poll_stopped", "Modbus polling stopped", "medium",
                 "A periodic request was not seen for several learned periods while other traffic went on: a "
                 "stopped HMI, a lost link, or blocked reporting.", ("T0804",)),
    # OPC UA
    BaselineRule("otids.baseline.opcua.new_service", "New OPC UA service for a pair", "medium",
                 "A client used an OPC UA service it never used towards this server.", ("T0855",)),
    BaselineRule("otids.baseline.opcua.new_node_written", "New OPC UA node written", "high",
                 "A client wrote a node it was never seen writing.", ("T0836", "T0855")),
    BaselineRule("otids.baseline.opcua.new_method_called", "New OPC UA method called", "high",
                 "A client called a method it was never seen calling.", ("T0855",)),
    BaselineRule("otids.baseline.opcua.security_changed", "OPC UA security policy or mode changed", "high",
                 "A secure channel used a security policy or mode not learned for this pair (a downgrade to None "
                 "is the usual case).", ("T0830",)),
    # MQTT
    BaselineRule("otids.baseline.mqtt.new_client_id", "New MQTT client id or username", "medium",
                 "A known MQTT client address connected with a client id or username it never used.", ("T0859",)),
    BaselineRule("otids.baseline.mqtt.new_topic", "New MQTT topic published", "medium",
                 "A client published to a topic it was never seen publishing to.", ("T0855", "T0856")),
    BaselineRule("otids.baseline.mqtt.new_subscription", "New MQTT subscription", "medium",
                 "A client subscribed to a topic filter it never subscribed to.", ("T0801",)),
    BaselineRule("otids.baseline.mqtt.qos_changed", "MQTT QoS changed for a topic", "low",
                 "A client published to a known topic with a QoS level it never used for it."),
    BaselineRule("otids.baseline.mqtt.publish_period_changed", "MQTT publish period changed", "medium",
                 "A periodic publication now repeats at a different period (flood or changed device).", ("T0814",)),
    BaselineRule("otids.baseline.mqtt.publish_stopped", "MQTT publishing stopped", "medium",
                 "A periodic publication was not seen for several learned periods while other traffic went on.",
                 ("T0804",)),
    # network (every host and connection, from connection records: network.py)
    BaselineRule("otids.baseline.network.new_host", "New host on the network", "medium",
                 "A host not in the baseline's network section held a conversation: a new or replaced device, a "
                 "maintenance laptop, or an intruder's machine.", ("T0864",)),
    BaselineRule("otids.baseline.network.host_moved", "Host seen with a new MAC or VLAN", "medium",
                 "A known host appeared with a hardware address or VLAN it never had: a replaced device, a moved "
                 "cable, or someone answering for it (ARP spoofing).", ("T0830",)),
    BaselineRule("otids.baseline.network.new_link", "New link between known hosts", "medium",
                 "Two known hosts held a conversation they were never seen having (lateral movement, a new "
                 "engineering connection).", ("T0886",)),
    BaselineRule("otids.baseline.network.new_service", "New service on a host", "medium",
                 "A known host answered on a port it never served: a new or enabled service, or a backdoor "
                 "listener.", ("T0869", "T0886")),
    BaselineRule("otids.baseline.network.new_port", "Known link on a new port", "low",
                 "A known client used a service of a known server it never used (the server offers it to others)."
                 , ("T0886",)),
    BaselineRule("otids.baseline.network.new_protocol", "New application protocol on a known link", "medium",
                 "A known link and port carried an application protocol it never carried: tunnelling, a "
                 "protocol on a port that belongs to another, or a changed service.", ("T0869",)),
    BaselineRule("otids.baseline.network.it_protocol", "IT remote-access or file-sharing protocol into a host",
                 "high", "RDP, VNC, SSH, Telnet, SMB, FTP, TFTP (or another remote-access or file-sharing "
                 "protocol) into a host that never used it: the way IT-side intrusions cross into OT.",
                 ("T0886", "T0867")),
    BaselineRule("otids.baseline.network.internet_ot", "Internet address talking to an OT device", "high",
                 "A global (internet) address held a conversation with a device that speaks an industrial "
                 "protocol, and the baseline has no such link.", ("T0883", "T0822")),
    BaselineRule("otids.baseline.network.host_silent", "Host gone silent", "medium",
                 "A host the baseline watches (silent_after) was not seen for longer than that while other "
                 "traffic went on: a stopped or failed device, a cut link, or a device taken over.", ("T0816",)),
]

RULES: dict[str, RuleInfo] = {r.id: r for r in _R}
