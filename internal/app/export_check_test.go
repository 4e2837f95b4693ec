package app

// ServiceConfig exposes serviceConfig to the external tests of check_test.go.
var ServiceConfig = serviceConfig
