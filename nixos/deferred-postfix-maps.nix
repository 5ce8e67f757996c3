# Core's MTA class that defers the Postfix map regeneration while the reconcile creates lists
# (./mailman_deferred_mta.py; issue 9: creating N lists costs O(N) instead of O(N^2)).
# ./core-python-modules.nix puts the class on core's interpreter path; imported by ./site.nix.
{
  # The stock class, mailman.mta.postfix.LMTP, with creation/deletion deferring to a running
  # reconcile (nixos/mailman_deferred_mta.py); the module's own mta.configuration stays. Core
  # loads its MTA class by the dotted path in `[mta] incoming` (mailman/app/lifecycle.py lines
  # 102 and 124, Mailman 3.3.10).
  services.mailman.settings.mta.incoming = "mailman_deferred_mta.DeferredLMTP";
}
