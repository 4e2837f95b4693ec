package providers

// PickTemplate returns a provider's own template for usage type u from
// byUsage: u's, else Generic's. ok is false when the provider has neither,
// and the message goes out with otpd's own templates, or not at all for
// providers that need a template of their own.
func PickTemplate[T any](byUsage map[UsageType]T, u UsageType) (t T, ok bool) {
	if t, ok = byUsage[u]; ok {
		return t, true
	}
	t, ok = byUsage[Generic]
	return t, ok
}
