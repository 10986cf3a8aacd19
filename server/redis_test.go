package server

// extraStores are the stores beyond the embedded one that the end-to-end tests run against.
var extraStores []storeFactory
