# The Hetzner Cloud VM: virtio hardware, static addresses, the name behind the PTR records.
# Boot loader and root file system come from nixos-infect's hardware-configuration.nix
# (imported by configuration.nix), which matches the disk layout the installer found.
{ modulesPath, deployment, ... }:
let
  net = deployment.network;
  metadataAddress = "169.254.169.254";
in
{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  # FQDN = hostName.domain = the PTR name of both addresses = Postfix's myhostname.
  networking.hostName = deployment.hostName;
  networking.domain = deployment.domain;

  # Static configuration from the document: the primary IPs are Pulumi resources that outlive
  # the server, and the addresses must be up before Postfix binds to them.
  networking.useDHCP = false;
  networking.useNetworkd = true;
  systemd.network.networks."10-uplink" = {
    # Hetzner Cloud VMs have one public interface: enp1s0 (ens3 on legacy types) with predictable
    # names, and eth0 on the first switch: nixos-infect's NixOS keeps Debian's name (its
    # networking.nix turns predictable names off) until the host reboots into this configuration.
    # Without eth0 here, that switch would stop the installer's scripted addresses and give the
    # uplink none, cutting the host off until a reboot.
    matchConfig.Name = "en* eth0";
    address = [
      "${net.ipv4Address}/32"
      "${net.ipv6Address}/${toString net.ipv6PrefixLength}"
    ];
    routes = [
      {
        Gateway = net.ipv4Gateway;
        GatewayOnLink = true;
      }
      { Gateway = net.ipv6Gateway; }
    ];
    networkConfig.IPv6AcceptRA = false;
    linkConfig.RequiredForOnline = "routable";
  };
  # Hetzner's recursive resolvers, reachable from every location.
  networking.nameservers = [
    "185.12.64.1"
    "185.12.64.2"
    "2a01:4ff:ff00::add:1"
    "2a01:4ff:ff00::add:2"
  ];

  # Hetzner's metadata service hands the server's user_data to any local process that asks, and
  # user_data carries the stack's SSH host private keys (components/host.py). NixOS needs none of
  # it after the install (the addresses come from deployment.json), so nothing on the host -- a
  # web app tricked into fetching a URL included -- may reach it.
  networking.nftables.tables.mailman-site-metadata = {
    family = "inet";
    content = ''
      chain output {
        type filter hook output priority 0; policy accept;
        ip daddr ${metadataAddress} counter reject with icmpx admin-prohibited
      }
    '';
  };

  # Needed by the Hetzner Cloud console's password reset and clean shutdowns.
  services.qemuGuest.enable = true;
  # 4 GB on the smallest types: compressed swap keeps the Django workers out of the OOM killer.
  zramSwap.enable = true;
  boot.tmp.cleanOnBoot = true;
}
