package ssh

import "sync"

// pumpSFTP starts the data flow of an sftp subsystem.
// TODO: packet-level decisions.
func (sc *sessionChannel) pumpSFTP(pumps *sync.WaitGroup) { sc.pump(pumps) }
