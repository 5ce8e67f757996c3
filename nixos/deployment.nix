# The deployment document (/etc/nixos/deployment.json; its JSON Schema, checked by the tests of
# both sides, is components/deployment.schema.json in the repository, not pushed to the host)
# turned into plain values for the modules.
#
# Builtins only, no nixpkgs: CI evaluates this file for real with
#   nix-instantiate --eval --strict --json nixos/deployment.nix --arg documentPath ./sample.json
# Every key of the document is read here and nowhere else, so this file is the Nix side of the
# contract test (tests/nixos/test_contract.py). A document that does not fit stops the build
# with one line naming the key and the expected form, before anything is activated.
{
  documentPath ? /etc/nixos/deployment.json,
  # The VM test passes its sample document with the repository's nixpkgs pin merged in.
  document ? builtins.fromJSON (builtins.readFile documentPath)
}:
let
  doc = document;

  fail = key: expected: throw "deployment.json: ${key}: expected ${expected}";

  # The keys this file reads; anything else in the document is an error, so a key the Python
  # side starts writing cannot be silently ignored here.
  knownKeys = [
    "schemaVersion"
    "hostname"
    "adminEmail"
    "mailDomains"
    "nixosRelease"
    "nixpkgs"
    "network"
    "dataVolume"
    "database"
    "acmeStaging"
    "mailman2Redirects"
    "socialLoginProviders"
    "dkimSelector"
    "sshAuthorizedKeys"
    "sshAllowedIps"
    "mtaSts"
    "dnsRecords"
    "backup"
  ];
  nixpkgsKeys = [
    "branch"
    "rev"
    "url"
    "sha256"
  ];
  networkKeys = [
    "ipv4Address"
    "ipv6Address"
    "ipv6PrefixLength"
  ];
  dataVolumeKeys = [
    "device"
    "fsType"
  ];
  mtaStsKeys = [
    "mode"
    "maxAge"
  ];
  dnsRecordKeys = [
    "name"
    "type"
    "values"
  ];
  backupKeys = [
    "host"
    "user"
    "port"
    "path"
    "keep"
  ];
  keepKeys = [
    "daily"
    "weekly"
    "monthly"
  ];

  checkKeys =
    where: known: set:
    let
      unknown = builtins.filter (k: !(builtins.elem k known)) (builtins.attrNames set);
      missing = builtins.filter (k: !(set ? ${k})) known;
    in
    if !(builtins.isAttrs set) then
      fail (
        if where == "" then "the document" else builtins.substring 0 (builtins.stringLength where - 1) where
      ) "an object"
    else if unknown != [ ] then
      fail "${where}${builtins.head unknown}" "no such key (known: ${builtins.concatStringsSep ", " known})"
    else if missing != [ ] then
      fail "${where}${builtins.head missing}" "a value (the key is required)"
    else
      set;

  top = checkKeys "" knownKeys doc;
  nixpkgs = checkKeys "nixpkgs." nixpkgsKeys top.nixpkgs;
  network = checkKeys "network." networkKeys top.network;
  dataVolume = checkKeys "dataVolume." dataVolumeKeys top.dataVolume;
  mtaSts = checkKeys "mtaSts." mtaStsKeys top.mtaSts;
  backup = checkKeys "backup." backupKeys top.backup;
  keep = checkKeys "backup.keep." keepKeys backup.keep;

  str =
    key: value:
    if builtins.isString value && value != "" then value else fail key "a non-empty string";
  bool = key: value: if builtins.isBool value then value else fail key "true or false";
  strList =
    key: value:
    if builtins.isList value && builtins.all builtins.isString value then
      value
    else
      fail key "a list of strings";
  nonEmpty = key: value: if value != [ ] then value else fail key "at least one entry";
  oneOf =
    key: allowed: value:
    if builtins.elem value allowed then
      value
    else
      fail key "one of ${builtins.concatStringsSep ", " allowed}";

  schemaVersion =
    if top.schemaVersion == 1 then
      1
    else
      fail "schemaVersion" "1 (this configuration reads version 1 of the document)";

  # The regular expression's groups, or the one-line error.
  groups =
    key: regex: expected: value:
    let
      found = builtins.match regex value;
    in
    if found == null then fail key expected else found;

  hostname = str "hostname" top.hostname;
  # The FQDN is the PTR name and Postfix's myhostname: NixOS composes it from hostName + domain.
  hostLabels =
    groups "hostname" "([a-z0-9-]+)\\.(.+)" "a fully qualified domain name such as lists.example.org"
      hostname;

  nixosRelease = str "nixosRelease" top.nixosRelease;
  nixosVersion = builtins.head (
    groups "nixosRelease" "nixos-([0-9]{2}\\.[0-9]{2})" "a NixOS branch such as nixos-26.05"
      nixosRelease
  );

  # The pin (components/nixpkgs-pin.json): a revision of the release the document names.
  nixpkgsRev = builtins.head (
    groups "nixpkgs.rev" "([0-9a-f]{40})" "a full nixpkgs commit id (40 hex digits)" (
      str "nixpkgs.rev" nixpkgs.rev
    )
  );
  nixpkgsPin = {
    branch =
      if nixpkgs.branch == nixosRelease then
        nixpkgs.branch
      else
        fail "nixpkgs.branch" "${nixosRelease} (the pin must be a revision of nixosRelease)";
    rev = nixpkgsRev;
    url =
      let
        expected = "https://github.com/NixOS/nixpkgs/archive/${nixpkgsRev}.tar.gz";
      in
      if nixpkgs.url == expected then nixpkgs.url else fail "nixpkgs.url" expected;
    sha256 = builtins.head (
      groups "nixpkgs.sha256" "(sha256-[A-Za-z0-9+/]{43}=)"
        "the NAR hash of the tarball as sha256-<base64>"
        (str "nixpkgs.sha256" nixpkgs.sha256)
    );
  };

  acmeStaging = bool "acmeStaging" top.acmeStaging;
  mailDomains = nonEmpty "mailDomains" (strList "mailDomains" top.mailDomains);
  socialLoginProviders = strList "socialLoginProviders" top.socialLoginProviders;
  mtaStsMode = oneOf "mtaSts.mode" [ "enforce" "testing" ] mtaSts.mode;
  # RFC 8461 section 3.2: at most a year; less than a day defeats the policy's purpose.
  mtaStsMaxAge =
    let
      value = mtaSts.maxAge;
    in
    if builtins.isInt value && value >= 86400 && value <= 31557600 then
      value
    else
      fail "mtaSts.maxAge" "an integer number of seconds between 86400 and 31557600";
  # The records the stack publishes, for the status report to compare with what DNS answers.
  dnsRecords =
    if builtins.isList top.dnsRecords then
      builtins.genList (
        i:
        let
          where = "dnsRecords.${toString i}.";
          record = checkKeys where dnsRecordKeys (builtins.elemAt top.dnsRecords i);
        in
        {
          name = str "${where}name" record.name;
          type = oneOf "${where}type" [ "A" "AAAA" "MX" "TXT" ] record.type;
          values = nonEmpty "${where}values" (strList "${where}values" record.values);
        }
      ) (builtins.length top.dnsRecords)
    else
      fail "dnsRecords" "a list of objects";
  # restic's --keep-<period> counts: whole numbers, daily at least one (a backup is kept).
  keepCount =
    period: least: value:
    if builtins.isInt value && value >= least && value <= 1000 then
      value
    else
      fail "backup.keep.${period}" "a whole number from ${toString least} to 1000";
  ipv6PrefixLength =
    if builtins.isInt network.ipv6PrefixLength then
      network.ipv6PrefixLength
    else
      fail "network.ipv6PrefixLength" "an integer between 1 and 128";
in
{
  inherit
    schemaVersion
    hostname
    nixosRelease
    nixosVersion
    acmeStaging
    mailDomains
    socialLoginProviders
    dnsRecords
    ;
  hostName = builtins.elemAt hostLabels 0;
  domain = builtins.elemAt hostLabels 1;
  adminEmail = str "adminEmail" top.adminEmail;
  # Mailman 2 URLs carry only the list name; redirects resolve it in the first mail domain.
  primaryMailDomain = builtins.head mailDomains;
  # The exact nixpkgs nixos-rebuild evaluates this configuration with: ./nixpkgs.nix fetches it
  # (see docs/nixos.md, "Pinning").
  nixpkgs = nixpkgsPin;

  network = {
    ipv4Address = str "network.ipv4Address" network.ipv4Address;
    ipv6Address = str "network.ipv6Address" network.ipv6Address;
    inherit ipv6PrefixLength;
    # Fixed on Hetzner Cloud: the IPv4 gateway is on-link, IPv6 routes via the link-local router.
    ipv4Gateway = "172.31.1.1";
    ipv6Gateway = "fe80::1";
  };

  dataVolume = {
    device = str "dataVolume.device" dataVolume.device;
    fsType = oneOf "dataVolume.fsType" [ "ext4" ] dataVolume.fsType;
  };

  database = oneOf "database" [ "postgresql" "sqlite" ] top.database;
  usePostgresql = top.database == "postgresql";

  acmeServer =
    if acmeStaging then "https://acme-staging-v02.api.letsencrypt.org/directory" else null;
  mailman2Redirects = bool "mailman2Redirects" top.mailman2Redirects;
  socialLoginApps = map (p: "allauth.socialaccount.providers.${p}") socialLoginProviders;
  dkimSelector = str "dkimSelector" top.dkimSelector;
  sshAuthorizedKeys = nonEmpty "sshAuthorizedKeys" (
    strList "sshAuthorizedKeys" top.sshAuthorizedKeys
  );
  sshAllowedIps = nonEmpty "sshAllowedIps" (strList "sshAllowedIps" top.sshAllowedIps);

  # The off-site restic repository (components/backup.py): SFTP to the Storage Box.
  backup = {
    host =
      builtins.head (
        groups "backup.host" "(([a-z0-9-]+\\.)+[a-z]+)" "the Storage Box's host name" (
          str "backup.host" backup.host
        )
      );
    user =
      builtins.head (
        groups "backup.user" "([a-z0-9][a-z0-9-]*)" "the Storage Box's user name" (
          str "backup.user" backup.user
        )
      );
    port = if backup.port == 23 then 23 else fail "backup.port" "23 (the Storage Box's SSH port)";
    path =
      builtins.head (
        groups "backup.path" "([a-z0-9][a-z0-9._-]*)" "a directory name in the Storage Box" (
          str "backup.path" backup.path
        )
      );
    keep = {
      daily = keepCount "daily" 1 keep.daily;
      weekly = keepCount "weekly" 0 keep.weekly;
      monthly = keepCount "monthly" 0 keep.monthly;
    };
  };

  # MTA-STS (RFC 8461): every mail domain's policy host serves this text. The Python side
  # renders the same text to derive the policy id in DNS (components/dns_records.py,
  # MtaStsPolicy); tests/test_contracts.py checks that both texts are identical.
  mtaSts = {
    mode = mtaStsMode;
    maxAge = mtaStsMaxAge;
    policy = builtins.concatStringsSep "" [
      "version: STSv1\n"
      "mode: ${mtaStsMode}\n"
      "mx: ${hostname}\n"
      "max_age: ${toString mtaStsMaxAge}\n"
    ];
    hosts = map (domain: "mta-sts.${domain}") mailDomains;
  };
}
