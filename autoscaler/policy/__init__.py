"""Policies: the YAML policy files (``config``) and the policy plugins that decide capacity.

Import submodules directly (``autoscaler.policy.config``, ``autoscaler.policy.plugin``); this
package re-exports nothing so importing one part never loads the others.
"""
