// Package policystore keeps policy governance state: published policy versions, the active
// pointer, the rollback history, the append-only change log, the shadow configuration and the
// shadow counters. Redis keeps them in Redis so that every replica of a fleet sees the same;
// Memory keeps them in the process for the embedded mode. Both pass one conformance test.
//
// It holds no customer state (that is package featurestore) and serves no RPC (that is
// server.PolicyService); package rollout applies what it holds to a running server.
package policystore
