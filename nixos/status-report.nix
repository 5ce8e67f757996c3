# The daily status report: `mailman-site-status-report` (./mailman_status_report.py) checks the
# site health (`mailman-site-health --outbound`, ./health.nix), the certificates' expiry, the age
# of the last good backup, the Postfix queue, disk and volume usage, the DNS records and PTRs the
# stack published, and the host's addresses on DNS blocklists. It mails adminEmail through the
# local Postfix only when the set of problems changed since its last mail (the first run always
# mails). Operators run it by hand with --dry-run (prints, mails nothing, remembers nothing).
{ config, pkgs, lib, deployment, ... }:
let
  postfix = config.services.postfix.package;
  # The data volume's mount point, as ./storage.nix mounts the document's volume device.
  volume =
    (lib.findFirst (fs: fs.device == deployment.dataVolume.device)
      (throw "status-report.nix: no file system for ${deployment.dataVolume.device}")
      (builtins.attrValues config.fileSystems)
    ).mountPoint;
  # Every key mailman_status_report.py's Config.read requires; no secrets.
  settings = {
    inherit (deployment) hostname adminEmail dnsRecords;
    ipv4 = deployment.network.ipv4Address;
    ipv6 = deployment.network.ipv6Address;
    # The certificates ./web.nix obtains: the hostname and every MTA-STS policy host.
    certificateNames = [ deployment.hostname ] ++ deployment.mtaSts.hosts;
    httpsPort = 443;
    lastBackupFile = import ./backup-status-file.nix;
    inherit volume;
    disks = [
      "/"
      volume
    ];
    stateFile = "/var/lib/mailman-site-status/last-report.json";
    healthCommand = [
      "/run/current-system/sw/bin/mailman-site-health"
      "--outbound"
    ];
    # nixpkgs pkgs/by-name/po/postfix/package.nix: command_directory=$out/sbin (postqueue),
    # sendmail_path=$out/bin/sendmail. Root needs no setgid wrapper for either.
    postqueueCommand = [
      "${postfix}/sbin/postqueue"
      "-j"
    ];
    sendmailCommand = [ "${postfix}/bin/sendmail" ];
    nameserver = null; # the host's resolver
    dnsPort = 53;
  };
  configFile = pkgs.writeText "mailman-site-status-report.json" (builtins.toJSON settings);
  python = pkgs.python3.withPackages (ps: [
    ps.dnspython
    ps.cryptography
  ]);
  report = pkgs.writeShellScriptBin "mailman-site-status-report" ''
    exec ${python}/bin/python3 ${./mailman_status_report.py} --config ${configFile} "$@"
  '';
in
{
  environment.systemPackages = [ report ];

  systemd.services.mailman-site-status-report = {
    description = "Daily status report to the site owner, mailed when something changed";
    after = [
      "network-online.target"
      "postfix.service"
    ];
    wants = [ "network-online.target" ];
    startAt = "*-*-* 06:40:00";
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${report}/bin/mailman-site-status-report";
      # Holds the last mailed status (last-report.json).
      StateDirectory = "mailman-site-status";
    };
  };
}
