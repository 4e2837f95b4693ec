package app

// WarnFraud exposes warnFraud to the external tests of fraud_test.go.
var WarnFraud = warnFraud
