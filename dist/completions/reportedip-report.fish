# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_reportedip_report_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_reportedip_report_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_reportedip_report_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_reportedip_report_using_subcommand
    set -l cmd (__fish_reportedip_report_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -s V -l version -d 'Print version'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "report" -d 'Report an attacking IP address (what fail2ban\'s actionban runs)'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "verify-key" -d 'Check the config and the API key; show the key\'s permissions and daily report usage'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "flush" -d 'Deliver spooled reports now, oldest first, in the foreground'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "status" -d 'Show the spool, backoff, quota and last outcomes'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "check" -d 'Look an IP address up at ReportedIP (costs one of the day\'s checks)'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "categories" -d 'List the category IDs and names'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "setup" -d 'Check the key (from standard input, or a prompt) and add the action to fail2ban\'s jails'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "blocklist" -d 'Block with community data: the ReportedIP blocklist in nftables'
complete -c reportedip-report -n "__fish_reportedip_report_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l categories -d 'Comma-separated category IDs or names, e.g. `18,22` or `ssh,brute-force` [default: the jail\'s categories, then `categories` in the config]' -r
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l jail -d 'fail2ban jail name (picks default categories and fills the comment)' -r
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l failures -d 'Number of failures that led to the ban (fills the comment)' -r
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l comment -d 'Comment sent with the report instead of the config\'s template' -r
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l queue -d 'Queue the report and return at once; a background sender delivers it'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l dry-run -d 'Validate and print what would be sent; no network, no state change'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l strict -d 'Exit with a non-zero status when the report was not delivered (for scripts)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -l json -d 'Print one JSON object describing the outcome on stdout'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand report" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand verify-key" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand verify-key" -l json -d 'Print one JSON object instead of text'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand verify-key" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand flush" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand flush" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand status" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand status" -l json -d 'Print one JSON object instead of text'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand status" -l prometheus -d 'Print node_exporter textfile-collector metrics (reportedip_*) instead of text'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand status" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand check" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand check" -l verbose -d 'Ask for the detailed answer (recent reports)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand check" -l json -d 'Print one JSON object instead of text'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand check" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand categories" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand categories" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l jails -d 'Jails to wire: `all` (every enabled jail that has categories) or `NAME,NAME`' -r
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l fail2ban-dir -d 'fail2ban\'s configuration directory' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l dry-run -d 'Show the drop-in and what each jail would get; change nothing'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l undo -d 'Remove the drop-in, test and restart fail2ban'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l yes -d 'Do not ask before writing'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -l force -d 'Wire the jails even when fail2ban\'s configuration fails its test already'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand setup" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "update" -d 'Download the feed, verify, filter and load it (exit 8 refused, 9 download failed)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "apply" -d 'Load the saved list again, without the network (boot; after a firewall reload)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "status" -d 'Show what is in force, what was left out and why, and what was dropped'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "remove" -d 'Delete the blocklist\'s table; the saved list stays'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "print" -d 'Print the nft script that apply would load'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and not __fish_seen_subcommand_from update apply status remove print help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from update" -l fail2ban-dir -d 'fail2ban\'s configuration directory, whose jails\' ignoreip are never blocked [default: /etc/fail2ban]' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from update" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from update" -l force -d 'Load a list that shrank by more than max_shrink_percent'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from apply" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from apply" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from status" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from status" -l json -d 'Print one JSON object instead of text'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from status" -l prometheus -d 'Print node_exporter textfile-collector metrics'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from remove" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from print" -s c -l config -d 'Configuration file' -r -F
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from print" -s h -l help -d 'Print help'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "update" -d 'Download the feed, verify, filter and load it (exit 8 refused, 9 download failed)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "apply" -d 'Load the saved list again, without the network (boot; after a firewall reload)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show what is in force, what was left out and why, and what was dropped'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete the blocklist\'s table; the saved list stays'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "print" -d 'Print the nft script that apply would load'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand blocklist; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "report" -d 'Report an attacking IP address (what fail2ban\'s actionban runs)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "verify-key" -d 'Check the config and the API key; show the key\'s permissions and daily report usage'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "flush" -d 'Deliver spooled reports now, oldest first, in the foreground'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "status" -d 'Show the spool, backoff, quota and last outcomes'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "check" -d 'Look an IP address up at ReportedIP (costs one of the day\'s checks)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "categories" -d 'List the category IDs and names'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "setup" -d 'Check the key (from standard input, or a prompt) and add the action to fail2ban\'s jails'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "blocklist" -d 'Block with community data: the ReportedIP blocklist in nftables'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and not __fish_seen_subcommand_from report verify-key flush status check categories setup blocklist help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and __fish_seen_subcommand_from blocklist" -f -a "update" -d 'Download the feed, verify, filter and load it (exit 8 refused, 9 download failed)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and __fish_seen_subcommand_from blocklist" -f -a "apply" -d 'Load the saved list again, without the network (boot; after a firewall reload)'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and __fish_seen_subcommand_from blocklist" -f -a "status" -d 'Show what is in force, what was left out and why, and what was dropped'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and __fish_seen_subcommand_from blocklist" -f -a "remove" -d 'Delete the blocklist\'s table; the saved list stays'
complete -c reportedip-report -n "__fish_reportedip_report_using_subcommand help; and __fish_seen_subcommand_from blocklist" -f -a "print" -d 'Print the nft script that apply would load'
