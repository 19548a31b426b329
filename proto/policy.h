/*
 * policy.h - who we accept mail for: served domains (accept_domains) and,
 * optionally, the recipient table (recipients_file). Fail closed (DESIGN.md
 * rule 8): anything that is not plainly a listed domain or address is
 * refused.
 *
 * Built once at start-up or reload (allocation allowed then), then read-only:
 * any worker may query a policy concurrently. Domains compare
 * case-insensitively with one trailing dot ignored; local parts exactly.
 */
#ifndef RINGMX_POLICY_H
#define RINGMX_POLICY_H

#include "../common/base.h"

struct smtp_policy;

enum policy_verdict {
	POLICY_ACCEPT,
	POLICY_RELAY_DENIED, /* 554 5.7.1 Relay access denied */
	POLICY_UNKNOWN_USER, /* 550 5.1.1 */
};

/* Creates an empty policy (accepts nothing). NULL on allocation failure. */
struct smtp_policy *policy_new(void);
void policy_free(struct smtp_policy *p);

/* Adds a served domain. -EINVAL for an empty or over-long name, -ENOMEM. */
RMX_MUST_CHECK int policy_add_domain(struct smtp_policy *p, struct span domain);

/* Adds one recipients_file entry ("local@domain" or "@domain" catch-all) and
 * switches the policy to "listed recipients only". -EINVAL if malformed. */
RMX_MUST_CHECK int policy_add_recipient(struct smtp_policy *p, struct span entry);

/*
 * Verdict for a forward path. local and domain as parsed (quotes kept);
 * route_chars / address_literal from smtp_path. Routing tricks are refused
 * unless the exact address is listed.
 */
enum policy_verdict policy_check_rcpt(const struct smtp_policy *p, struct span local,
				      struct span domain, bool route_chars, bool address_literal);

/* True when the policy has a recipient table. */
bool policy_has_recipients(const struct smtp_policy *p);

#endif
