"""The status the operator writes (pruned to this schema by the API server)."""

from __future__ import annotations

from typing import Any

from crd.schema import array, integer, obj, string

STATUS: dict[str, Any] = obj(
    properties={
        "dkim": obj(
            "The DKIM record(s) to publish, and whether the relay signs with them.",
            properties={
                "domain": string(),
                "keySecret": string("The Secret the keys are read from."),
                "signing": string(
                    (
                        "Active (the running pods sign with these keys), Pending (rolling out), Stopped (replicas "
                        "is 0) or Blocked (see the Stalled condition)."
                    ),
                    enum=["Active", "Pending", "Stopped", "Blocked"],
                ),
                "records": array(
                    obj(
                        properties={
                            "name": string("The DNS name, <selector>._domainkey.<domain>."),
                            "algorithm": string(),
                            "value": string("The TXT data as one string, for DNS providers that take it whole."),
                            "zone": string(
                                (
                                    "The whole record as a zone-file line, the data split into quoted strings of "
                                    "at most 255 characters, for zone files, nsupdate and providers that want it "
                                    "split."
                                ),
                            ),
                        },
                    ),
                ),
            },
        ),
        "oauth2": obj(
            (
                "The OAuth2 access token the operator keeps for the relay (authType OAuth2); the token itself is "
                "only in the token Secret, which only the relay pods' xoauth2 container mounts."
            ),
            properties={
                "tokenSecret": string("The operator's Secret holding the current access token."),
                "tokenExpiresAt": string("When the current access token expires (it is refreshed at half its life)."),
                "lastRefreshed": string("When the token endpoint last issued a token."),
                "lastFailure": string(
                    "The last failed request to the token endpoint since then; empty after a success."
                ),
                "refreshTokenExpiresAt": string(
                    "When the refresh token expires, if the provider said so (Google apps in Testing)."
                ),
            },
        ),
        "observedGeneration": integer(format="int64"),
        "replicas": integer(),
        "readyReplicas": integer(),
        "selector": string("Label selector of the relay's pods, for the scale subresource (HPA, KEDA)."),
        "configHash": string(),
        "refusedChild": string(
            (
                "The child object (kind/name@digest) the API server refused for good; it is not sent again until "
                "the relay changes. Absent when nothing was refused."
            ),
        ),
        "endpoint": string(),
        "queue": obj(
            (
                "The relay's mail queue, summed over its ready pods that answered, as their metrics reported it "
                "at the operator's last resync (zero when none did: see the Delivering condition, which also says "
                "whether mail is leaving)."
            ),
            properties={
                "active": integer("Messages being delivered now."),
                "deferred": integer("Messages waiting for a retry after a failed delivery."),
                "hold": integer("Messages put on hold by an administrator."),
                "incoming": integer("Messages received and not yet seen by the queue manager."),
                "oldestMessageAge": string(
                    (
                        'How old the oldest queued message is, as a bound ("under 100s", "under 3h"; the '
                        "exporter counts ages in powers of ten); empty when nothing is queued."
                    ),
                ),
            },
        ),
        "conditions": array(
            obj(
                required=["type", "status", "lastTransitionTime", "reason", "message"],
                properties={
                    "type": string(maxLength=316),
                    "status": string(enum=["True", "False", "Unknown"]),
                    "observedGeneration": integer(format="int64", minimum=0),
                    "lastTransitionTime": string(format="date-time"),
                    "reason": string(maxLength=1024, minLength=1, pattern="^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
                    "message": string(maxLength=32768),
                },
            ),
            list_type="map",
            list_map_keys=["type"],
        ),
    },
)
