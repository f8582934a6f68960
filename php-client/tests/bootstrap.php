<?php

declare(strict_types=1);

// The tests load the library the way a user without Composer does.
require_once __DIR__ . '/../autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'Pipevisor\\Tests\\')) {
        $file = __DIR__ . '/' . str_replace('\\', '/', substr($class, 16)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
